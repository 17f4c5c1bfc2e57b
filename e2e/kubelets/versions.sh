# shellcheck shell=bash disable=SC2034 # sourced: the variables are used by the scripts
# Shared settings for e2e/kubelets (sourced, not run): which kubelets, and which Go
# toolchain builds each (empty = the machine's Go).
KUBELET_NEW="${TANDEM_KUBELET_NEW:-v1.36.3}"   # native sidecars on (GA)
KUBELET_128="${TANDEM_KUBELET_128:-v1.28.15}"  # knows the field, gate off by default: rejects
KUBELET_OLD="${TANDEM_KUBELET_OLD:-v1.27.16}"  # does not know the field
KUBELET_VERSIONS=("$KUBELET_NEW" "$KUBELET_128" "$KUBELET_OLD")

default_toolchain() { # default_toolchain <minor>
  case "$1" in
    *) echo "" ;;
  esac
}
