/* The pod sandbox's pause process for the e2e images (what registry.k8s.io/pause does):
 * sleeps until SIGINT/SIGTERM, reaps orphaned children. Built static by images.sh. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }
static void on_chld(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction t = {.sa_handler = on_term}, c = {.sa_handler = on_chld, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGINT, &t, NULL);
  sigaction(SIGTERM, &t, NULL);
  sigaction(SIGCHLD, &c, NULL);
  for (;;) pause();
  return 1;
}
