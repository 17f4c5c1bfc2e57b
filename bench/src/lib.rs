//! Benchmarks for tandem (see `bench/README.md`): generators for realistic inputs.

/// A multi-document YAML stream of `n` workloads of mixed kinds, each with three
/// containers, probes, env and volumes, like a large GitOps repository.
pub fn workloads_yaml(n: usize) -> String {
    let mut out = String::with_capacity(n * 1600);
    for i in 0..n {
        let (kind, api, template_open, indent) = match i % 4 {
            0 => (
                "Deployment",
                "apps/v1",
                "spec:\n  replicas: 3\n  selector:\n    matchLabels: {app: svc}\n  template:\n",
                "    ",
            ),
            1 => (
                "StatefulSet",
                "apps/v1",
                "spec:\n  serviceName: svc\n  selector:\n    matchLabels: {app: svc}\n  template:\n",
                "    ",
            ),
            2 => ("Job", "batch/v1", "spec:\n  template:\n", "    "),
            _ => (
                "CronJob",
                "batch/v1",
                "spec:\n  schedule: \"*/5 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n",
                "        ",
            ),
        };
        out.push_str(&format!(
            "---\napiVersion: {api}\nkind: {kind}\nmetadata:\n  name: svc-{i}\n  namespace: team-{}\n  labels: {{app: svc, tier: \"backend\"}}\n{template_open}",
            i % 50
        ));
        let restart = if matches!(kind, "Job" | "CronJob") {
            "OnFailure"
        } else {
            "Always"
        };
        let pod = format!(
            "metadata:\n  labels: {{app: svc}}\n  annotations: {{prometheus.io/scrape: \"true\"}}\nspec:\n  restartPolicy: {restart}\n  initContainers:\n  - name: migrate\n    image: registry.example.com/migrate:1.{i}\n  containers:\n  - name: app\n    image: registry.example.com/app:2.{i}\n    ports: [{{name: http, containerPort: 8080}}]\n    env:\n    - {{name: MODE, value: \"on\"}}\n    - {{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}\n    readinessProbe: {{httpGet: {{path: /ready, port: http}}, periodSeconds: 5}}\n    livenessProbe: {{httpGet: {{path: /live, port: http}}}}\n    resources: {{requests: {{cpu: 100m, memory: 128Mi}}, limits: {{memory: 256Mi}}}}\n    volumeMounts: [{{name: cache, mountPath: /cache}}, {{name: cfg, mountPath: /etc/app}}]\n  - name: worker\n    image: registry.example.com/worker:2.{i}\n    args: [\"--queue=jobs\", \"--concurrency=4\"]\n    volumeMounts: [{{name: cache, mountPath: /cache}}]\n  - name: metrics\n    image: registry.example.com/exporter:0.9\n    ports: [{{containerPort: 9100}}]\n  volumes:\n  - {{name: cache, emptyDir: {{}}}}\n  - {{name: cfg, configMap: {{name: svc-{i}}}}}\n  nodeSelector: {{pool: general}}\n"
        );
        for line in pod.lines() {
            out.push_str(indent);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
