{{/*
Names and labels of the algoedge-crds chart. The CRD's own name is fixed by Kubernetes
(<plural>.<group>), so only labels come from here.
*/}}

{{/* The chart name. */}}
{{- define "algoedge-crds.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "algoedge-crds.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels the chart adds to the CRD. The file in crds/ already carries app.kubernetes.io/name,
component and part-of; those stay as the file has them.
*/}}
{{- define "algoedge-crds.labels" -}}
helm.sh/chart: {{ include "algoedge-crds.chart" . }}
app.kubernetes.io/name: {{ include "algoedge-crds.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: crd
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
