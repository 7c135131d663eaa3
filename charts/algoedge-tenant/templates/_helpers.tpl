{{/*
Names, labels and checks of the algoedge-tenant chart. Kubernetes names and label values are at
most 63 characters, so each is cut there (and never left ending in "-").
*/}}

{{/* The chart name. */}}
{{- define "algoedge-tenant.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The tenant's name: tenantName, else the release name. */}}
{{- define "algoedge-tenant.fullname" -}}
{{- default .Release.Name .Values.tenantName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "algoedge-tenant.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The version that runs: the app image's tag, else the chart's appVersion. */}}
{{- define "algoedge-tenant.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object; pass (dict "root" $ "component" "…"). */}}
{{- define "algoedge-tenant.labels" -}}
helm.sh/chart: {{ include "algoedge-tenant.chart" .root }}
app.kubernetes.io/name: {{ include "algoedge-tenant.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ include "algoedge-tenant.version" .root | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: algoedge
{{- end }}

{{/* The label the operator requires on every Secret a tenant references (SecretNotLabelled). */}}
{{- define "algoedge-tenant.secretLabel" -}}
algoedge.io/tenant: {{ include "algoedge-tenant.fullname" . }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; pass (list $ .Values.image). */}}
{{- define "algoedge-tenant.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The database Secret's name: the chart's own, or the user's. Fails unless exactly one is given. */}}
{{- define "algoedge-tenant.databaseSecret" -}}
{{- $db := .Values.database }}
{{- if and $db.url $db.existingSecret.name }}
{{- fail "database: give either database.url (the chart creates the Secret) or database.existingSecret.name (your Secret), not both" }}
{{- else if $db.url }}
{{- printf "%s-db" (include "algoedge-tenant.fullname" .) | trunc 253 }}
{{- else if $db.existingSecret.name }}
{{- $db.existingSecret.name }}
{{- else }}
{{- fail "database: set database.url (postgresql://USER:PASSWORD@HOST:PORT/DBNAME; the chart creates the Secret) or database.existingSecret.name (a Secret you created and labelled algoedge.io/tenant=<tenant>)" }}
{{- end }}
{{- end }}

{{/* The MetaAPI token Secret's name, empty when none is given. Fails when both are given. */}}
{{- define "algoedge-tenant.metaapiSecret" -}}
{{- $metaapi := .Values.metaapi }}
{{- if and $metaapi.token $metaapi.existingSecret.name }}
{{- fail "metaapi: give either metaapi.token (the chart creates the Secret) or metaapi.existingSecret.name (your Secret), not both" }}
{{- else if $metaapi.token }}
{{- printf "%s-metaapi" (include "algoedge-tenant.fullname" .) | trunc 253 }}
{{- else if $metaapi.existingSecret.name }}
{{- $metaapi.existingSecret.name }}
{{- end }}
{{- end }}

{{/* Name of the ServiceAccount (and Role, RoleBinding) of the `helm test` pod. */}}
{{- define "algoedge-tenant.testName" -}}
{{- printf "%s-test-ready" (include "algoedge-tenant.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
