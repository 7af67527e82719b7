{{/* The chart's name, or nameOverride. */}}
{{- define "triton-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of every object: fullnameOverride, or <release>-<name> (just <release> when it already holds
the name). Kubernetes names are at most 63 characters. */}}
{{- define "triton-operator.fullname" -}}
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

{{/* The app.kubernetes.io selector labels of the operator pod: never change them on upgrade (a Deployment's
selector is immutable). */}}
{{- define "triton-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "triton-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The standard labels of every object the chart creates. Note app.kubernetes.io/managed-by is Helm here: the
operator's own children carry managed-by=triton-operator, and it watches only those. */}}
{{- define "triton-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "triton-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: triton-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "triton-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "triton-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is set, else repository:tag (the tag defaulting to the appVersion). */}}
{{- define "triton-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
RBAC, least privilege, derived from what the operator's code calls (operator/triton_operator/adapters/kube.py,
handlers/__init__.py) and what kopf does in standalone mode; proven by tests/cluster/test_helm_chart.py, which runs
the real operator under this ServiceAccount and reads the API server's audit log. No get on anything: the operator
works from its watch streams, and server-side apply returns the object it wrote.

Rules for resources in the namespaces the operator serves: in one ClusterRole when it serves every namespace, in
a Role per namespace otherwise.
*/}}
{{- define "triton-operator.namespacedRules" -}}
# InferenceServices: kopf lists and watches them; the reconciler works from that stream.
- apiGroups: [serving.triton-operator.dev]
  resources: [inferenceservices]
  verbs: [list, watch]
# status (phase, conditions, replicas, models, autoscaler): merge patches of the status subresource only, never
# of spec.
- apiGroups: [serving.triton-operator.dev]
  resources: [inferenceservices/status]
  verbs: [patch]
# Children carry a controller ownerReference with blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement
# admission plugin (on by default in OpenShift) allows only to whoever may update the owner's finalizers. The
# operator sets no finalizer.
- apiGroups: [serving.triton-operator.dev]
  resources: [inferenceservices/finalizers]
  verbs: [update]
# The children: watched (only those labelled app.kubernetes.io/managed-by=triton-operator) and server-side applied
# (patch, plus create: an apply that creates the object is authorized as a create too). The operator never deletes
# a Deployment or Service (garbage collection does), but OwnerReferencesPermissionEnforcement lets only whoever may
# delete an object change its ownerReferences: needed to adopt a child again (its InferenceService deleted with
# --cascade=orphan and created anew) or to repair an edited ownerReference.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
# A disruption budget and an HPA are also deleted when the spec stops wanting them (one replica; engine Operator).
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
# The built-in autoscaler sets a Deployment's replicas through its scale subresource.
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# Triton pods (managed-by=triton-operator): watched for scheduling, readiness and container exits.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# With spec.models, the operator opens the pod's readiness gate (serving.triton-operator.dev/models-loaded) once
# Triton has loaded the models: a strategic merge patch of one condition in pods/status.
- apiGroups: [""]
  resources: [pods/status]
  verbs: [patch]
# When Triton exits, the end of the previous container's log is quoted in status (e.g. which model failed).
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# core/v1 Events on InferenceServices (phase transitions, scaling decisions), as `kubectl describe` shows them.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* Rules for cluster-scoped resources, in a ClusterRole in both modes. */}}
{{- define "triton-operator.clusterScopedRules" -}}
# Nodes are listed only while pods cannot be scheduled, to say why (no node has GPU product X, ...).
- apiGroups: [""]
  resources: [nodes]
  verbs: [list]
# kopf watches CustomResourceDefinitions to notice the InferenceService CRD being installed (an operator that
# started first would otherwise never serve it), upgraded or removed.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{/* "true" when the operator runs with kopf peering: asked for, or needed by more than one replica. */}}
{{- define "triton-operator.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The peering object's name. */}}
{{- define "triton-operator.peeringName" -}}
{{- default (include "triton-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
With peering, kopf lists and watches the peering objects of its kind (ClusterKopfPeering cluster-wide, KopfPeering
in each served namespace) and patches its own record into the status of the one it was named; the operator reads
that one every second to know whether this replica works or stands by.
*/}}
{{- define "triton-operator.peeringRules" -}}
{{- $kind := ternary "kopfpeerings" "clusterkopfpeerings" (gt (len .Values.watchNamespaces) 0) }}
- apiGroups: [kopf.dev]
  resources: [{{ $kind }}]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [{{ $kind }}]
  resourceNames: [{{ include "triton-operator.peeringName" . | quote }}]
  verbs: [get, patch]
{{- end }}
