{{/* The release's base name. */}}
{{- define "runplane.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "runplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "org-service"). */}}
{{- define "runplane.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The container image. */}}
{{- define "runplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString (default .Chart.AppVersion .Values.image.tag)) -}}
{{- end -}}

{{/* The five services: name, values key, protocol, and what each needs. */}}
{{- define "runplane.components" -}}
- name: org-service
  key: orgService
  protocol: grpc
  database: true
- name: token-service
  key: tokenService
  protocol: grpc
  database: true
- name: workflow-run-service
  key: workflowRunService
  protocol: grpc
  database: true
- name: metrics-service
  key: metricsService
  protocol: http
  database: false
- name: ingest-service
  key: ingestService
  protocol: http
  database: false
{{- end -}}

{{/* The Secret and key holding the database URL. */}}
{{- define "runplane.databaseSecret" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else -}}
{{- printf "%s-database" (include "runplane.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the admin credential. */}}
{{- define "runplane.adminSecret" -}}
{{- if .Values.admin.existingSecret -}}
{{- .Values.admin.existingSecret -}}
{{- else -}}
{{- printf "%s-admin" (include "runplane.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* A duration such as 90m, 24h or 2d in seconds; call with (dict "value" V "name" "values.key"). */}}
{{- define "runplane.seconds" -}}
{{- $value := toString .value -}}
{{- if not (regexMatch "^[0-9]+[smhdw]$" $value) -}}
{{- fail (printf "%s must be a number and one unit of s, m, h, d or w (e.g. 24h), not %q" .name $value) -}}
{{- end -}}
{{- $units := dict "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800 -}}
{{- mul (trimSuffix (regexFind "[smhdw]$" $value) $value | atoi) (get $units (regexFind "[smhdw]$" $value)) -}}
{{- end -}}

{{/* The metric names' prefix metrics-service is configured with (metrics_namespace). */}}
{{- define "runplane.metricsNamespace" -}}
{{- $section := (get .Values.config "metrics_service") | default dict -}}
{{- coalesce .Values.metricsService.config.metrics_namespace $section.metrics_namespace .Values.config.metrics_namespace "chainloop" -}}
{{- end -}}
