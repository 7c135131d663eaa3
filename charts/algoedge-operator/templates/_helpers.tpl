{{/*
Names and labels shared by every template. Kubernetes names and label values are at most 63
characters, so each name is cut there (and never left ending in "-").
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "algoedge-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of this release's objects: fullnameOverride, else the release name followed by
the chart name unless the release name already contains it.
*/}}
{{- define "algoedge-operator.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "algoedge-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The version that runs: the image tag, else the chart's appVersion. */}}
{{- define "algoedge-operator.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "algoedge-operator.labels" -}}
helm.sh/chart: {{ include "algoedge-operator.chart" . }}
{{ include "algoedge-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "algoedge-operator.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: algoedge
{{- end }}

{{/* Labels that select the operator pod; they never change across upgrades. */}}
{{- define "algoedge-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "algoedge-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "algoedge-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "algoedge-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: by digest when one is given, else by tag. */}}
{{- define "algoedge-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's rules on namespaced resources: in the ClusterRole (every namespace), or in one
Role per watched namespace (watchNamespaces). k8s/operator/rbac.yaml holds the same rules
(tests/unit/charts/test_clusterrole.py compares them); docs/operator.md explains each.
*/}}
{{- define "algoedge-operator.namespacedRules" -}}
# Watch tenants (kopf), write their status subresource.
- apiGroups: [algoedge.io]
  resources: [algoedgetenants]
  verbs: [get, list, watch]
- apiGroups: [algoedge.io]
  resources: [algoedgetenants/status]
  verbs: [get, patch]
# Owner references with blockOwnerDeletion need this where OwnerReferencesPermissionEnforcement is on.
- apiGroups: [algoedge.io]
  resources: [algoedgetenants/finalizers]
  verbs: [update]
# Children: list+watch (by the managed-by label) so reconciles read them from memory, get for
# the tenant's own Secrets and before the watches have listed, create+patch for server-side
# apply; delete only for optional children the spec stopped wanting (beat, managed Redis).
- apiGroups: [""]
  resources: [configmaps, secrets, services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
# Monitors of tenants with spec.monitoring.enabled (Prometheus Operator CRDs, when installed);
# delete when monitoring is turned off. API discovery needs no grant.
- apiGroups: [monitoring.coreos.com]
  resources: [podmonitors, prometheusrules]
  verbs: [get, list, watch, create, patch, delete]
# Scale decisions and SecretMissing are reported as Events on the tenant.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end }}
