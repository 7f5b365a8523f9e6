{{/* Names, labels and shared pieces of the kubetune chart. */}}

{{- define "kubetune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetune.fullname" -}}
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

{{- define "kubetune.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "kubetune.labels" -}}
helm.sh/chart: {{ include "kubetune.chart" . }}
{{ include "kubetune.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubetune
{{- end }}

{{- define "kubetune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubetune.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest when a digest is set, else repository:tag. */}}
{{- define "kubetune.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}


{{/*
The namespaced rules of docs/operator.md's RBAC table (granted by a ClusterRole when
cluster-wide, by a Role in each watched namespace otherwise). tests/unit/test_helm_chart.py
compares them with the table.
*/}}
{{- define "kubetune.namespacedRules" -}}
- apiGroups: [kubetune.dev]
  resources: [datasets, finetunejobs, compressions, evaluations, feedbackloops]
  verbs: [get, list, watch, patch]
- apiGroups: [kubetune.dev]
  resources: [datasets, finetunejobs, compressions, evaluations]
  verbs: [create, delete]
- apiGroups: [kubetune.dev]
  resources: [datasets/status, finetunejobs/status, compressions/status, evaluations/status, feedbackloops/status]
  verbs: [patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, create]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create]
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [get, list, watch, create, patch]
{{- end }}

{{/* The cluster-scoped rules: kopf's CRD discovery (always), namespaces (cluster-wide). */}}
{{- define "kubetune.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if not .Values.watchNamespaces }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}

{{/* Fail early on combinations the schema cannot express clearly. */}}
{{- define "kubetune.validate" -}}
{{- $le := .Values.leaderElection }}
{{- if and (gt (int .Values.replicas) 1) (not $le.enabled) }}
{{- fail (printf "replicas: %d needs leaderElection.enabled: true, or every replica would act on the same resources." (int .Values.replicas)) }}
{{- end }}
{{- if and $le.enabled (not (gt (int $le.leaseDuration) (int $le.renewDeadline))) }}
{{- fail "leaderElection: leaseDuration must be greater than renewDeadline" }}
{{- end }}
{{- if and $le.enabled (not (gt (int $le.renewDeadline) (int $le.retryPeriod))) }}
{{- fail "leaderElection: renewDeadline must be greater than retryPeriod" }}
{{- end }}
{{- end }}
