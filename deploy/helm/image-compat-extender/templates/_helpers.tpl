{{- define "ice.labels" -}}
app.kubernetes.io/part-of: image-compat-extender
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ice.scheduler.labels" -}}
{{ include "ice.labels" . }}
app.kubernetes.io/name: image-compat-scheduler
app.kubernetes.io/component: scheduler
{{- end -}}

{{- define "ice.extender.labels" -}}
{{ include "ice.labels" . }}
app.kubernetes.io/name: image-compat-extender
app.kubernetes.io/component: extender
{{- end -}}

{{- define "ice.extender.host" -}}
image-compat-extender.{{ .Release.Namespace }}.svc
{{- end -}}

{{- define "ice.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "ice.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The KubeSchedulerConfiguration: deploy/base/scheduler/image-compat-scheduler.yaml, from values. */}}
{{- define "ice.scheduler.config" -}}
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: ""
leaderElection:
  leaderElect: {{ .Values.scheduler.leaderElect }}
  resourceName: {{ .Values.scheduler.schedulerName }}
  resourceNamespace: {{ .Release.Namespace }}
  resourceLock: leases
percentageOfNodesToScore: {{ .Values.scheduler.percentageOfNodesToScore }}
profiles:
  - schedulerName: {{ .Values.scheduler.schedulerName }}
extenders:
  - urlPrefix: {{ printf "%s://%s:%d/" (ternary "https" "http" .Values.tls.enabled) (include "ice.extender.host" .) (int .Values.extender.port) | quote }}
{{- if .Values.scheduler.singleCall }}
    filterVerb: filter-best-fit
{{- else }}
    filterVerb: filter
    prioritizeVerb: prioritize
{{- end }}
    preemptVerb: preempt
{{- if .Values.variants.enabled }}
    bindVerb: bind
{{- end }}
    nodeCacheCapable: true
    httpTimeout: {{ .Values.scheduler.httpTimeout }}
    ignorable: {{ .Values.scheduler.ignorable }}
{{- if not .Values.scheduler.singleCall }}
    weight: {{ .Values.scheduler.weight }}
{{- end }}
{{- if .Values.tls.enabled }}
    enableHTTPS: true
    tlsConfig:
      caFile: /etc/kubernetes/image-compat-scheduler-tls/ca.crt
{{- end }}
{{- end -}}
