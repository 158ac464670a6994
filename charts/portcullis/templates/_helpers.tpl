{{/* The chart's name, or nameOverride: the app.kubernetes.io/name label. */}}
{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of every object: fullnameOverride, else the release name
     (when it holds the chart's name), else release-name. */}}
{{- define "portcullis.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "portcullis.name" . -}}
{{- if contains $name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.labels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: portcullis
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "portcullis.selector" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}{{ printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}{{- else -}}{{ printf "%s:%s" .Values.image.repository $tag }}{{- end -}}
{{- end -}}

{{- define "portcullis.excluded" -}}
{{- $ns := concat .Values.webhook.excludeNamespaces (list .Release.Namespace) | uniq -}}
{{ toJson $ns }}
{{- end -}}

{{/* The rules every webhook entry matches: every way a pod spec reaches the cluster. */}}
{{- define "portcullis.rules" -}}
- operations: ["CREATE", "UPDATE"]
  apiGroups: [""]
  apiVersions: ["v1"]
  resources: ["pods", "pods/ephemeralcontainers", "podtemplates", "replicationcontrollers"]
  scope: Namespaced
- operations: ["CREATE", "UPDATE"]
  apiGroups: ["apps"]
  apiVersions: ["v1"]
  resources: ["deployments", "replicasets", "statefulsets", "daemonsets"]
  scope: Namespaced
- operations: ["CREATE", "UPDATE"]
  apiGroups: ["batch"]
  apiVersions: ["v1"]
  resources: ["jobs", "cronjobs"]
  scope: Namespaced
{{- end -}}

{{/* A duration of the simple form the schema admits (8s, 7500ms, 1m30s) in milliseconds. */}}
{{- define "portcullis.millis" -}}
{{- $ms := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d)" . -1 -}}
{{- $n := regexFind "^[0-9]+" . | atoi -}}
{{- $unit := regexFind "[a-z]+$" . -}}
{{- $ms = add $ms (mul $n (get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000) $unit)) -}}
{{- end -}}
{{- $ms -}}
{{- end -}}

{{/* Values JSON Schema cannot check: how they relate. */}}
{{- define "portcullis.validate" -}}
{{- $deadline := include "portcullis.millis" .Values.deadline | atoi -}}
{{- $timeout := mul .Values.webhook.timeoutSeconds 1000 -}}
{{- if or (le $deadline 0) (ge $deadline $timeout) -}}
{{- fail (printf "deadline (%s) must be above zero and below webhook.timeoutSeconds (%ds), so that Portcullis answers, with each tier's onError, before the API server gives up and applies the webhook's failurePolicy" .Values.deadline (int .Values.webhook.timeoutSeconds)) -}}
{{- end -}}
{{- range $k, $_ := .Values.podLabels -}}
{{- if has $k (list "app.kubernetes.io/name" "app.kubernetes.io/instance") -}}
{{- fail (printf "podLabels.%s: the chart sets this label, the Service's and the Deployment's selector" $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The helm test Pod: never selected by the Service, the PDB or the NetworkPolicy's pods. */}}
{{- define "portcullis.testLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/part-of: portcullis
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
