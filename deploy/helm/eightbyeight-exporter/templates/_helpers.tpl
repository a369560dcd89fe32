{{/* The chart's name, or nameOverride. */}}
{{- define "eightbyeight-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release name when it already holds the chart's name. */}}
{{- define "eightbyeight-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "eightbyeight-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eightbyeight-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eightbyeight-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "eightbyeight-exporter.labels" -}}
helm.sh/chart: {{ include "eightbyeight-exporter.chart" . }}
{{ include "eightbyeight-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "eightbyeight-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding the callbacks' Authorization value: existing, or made by the chart. */}}
{{- define "eightbyeight-exporter.webhookSecret" -}}
{{- default (printf "%s-webhook-auth" (include "eightbyeight-exporter.fullname" .)) .Values.webhooks.existingSecret }}
{{- end }}

{{- define "eightbyeight-exporter.webhookSecretKey" -}}
{{- if .Values.webhooks.existingSecret }}{{ .Values.webhooks.existingSecretKey }}{{ else }}auth-header{{ end }}
{{- end }}

