{{/*
Names are fixed, not derived from the release name: the webhook's flags name its Secret,
Service and MutatingWebhookConfiguration, and `tandem install` renders the same objects
(crates/cli/tests/e2e_helm.rs compares them). Install tandem once per cluster.
*/}}
{{- define "tandem.app" -}}tandem-webhook{{- end }}
{{- define "tandem.webhookConfiguration" -}}tandem{{- end }}
{{- define "tandem.labelNodes" -}}tandem-label-nodes{{- end }}

{{/* The recommended labels: include "tandem.labels" (list $ "tandem-webhook" "webhook") */}}
{{- define "tandem.labels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ index . 2 }}
app.kubernetes.io/part-of: tandem
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- end }}

{{- define "tandem.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "tandem.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "tandem.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{- define "tandem.selfManaged" -}}{{ eq .Values.tls.mode "self-managed" }}{{- end }}

{{/* The config as the webhook reads it (also hashed into the pod template). */}}
{{- define "tandem.config" -}}
{{ toYaml .Values.config }}
{{- end }}

{{/* Scrape settings of the ServiceMonitor and PodMonitor endpoints. */}}
{{- define "tandem.scrapeTls" -}}
scheme: https
path: /metrics
tlsConfig:
  # The CA in the certificate's Secret (self-managed, cert-manager and your own Secret
  # all carry ca.crt), checked against the Service's DNS name.
  ca:
    secret:
      name: {{ .Values.tls.secretName }}
      key: ca.crt
  serverName: {{ include "tandem.app" . }}.{{ .Release.Namespace }}.svc
{{- end }}
