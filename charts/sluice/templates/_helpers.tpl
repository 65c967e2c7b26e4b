{{/*
The chart's name, overridable with nameOverride.
*/}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A fully qualified name for the release's objects (63 characters at most, the DNS label limit).
If the release name already contains the chart name, it is used as is.
*/}}
{{- define "sluice.fullname" -}}
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

{{/*
chart label value: name-version.
*/}}
{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | toString | trunc 63 | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: sluice
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the controller's pods (never change them: a Deployment's selector is
immutable).
*/}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
One controller Deployment of the release, called with (dict "root" $ "shard" NAME): the main
one (shard "") keeps the release's name and labels; a shard's are suffixed with its name, so
that no Deployment's selector takes another's pods.
*/}}
{{- define "sluice.shardName" -}}
{{- if .shard }}
{{- printf "%s-%s" (include "sluice.fullname" .root) .shard | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "sluice.fullname" .root }}
{{- end }}
{{- end }}

{{- define "sluice.shardSelectorLabels" -}}
{{- if .shard }}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ printf "%s-%s" .root.Release.Name .shard | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "sluice.selectorLabels" .root }}
{{- end }}
{{- end }}

{{- define "sluice.shardLabels" -}}
helm.sh/chart: {{ include "sluice.chart" .root }}
{{ include "sluice.shardSelectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | toString | trunc 63 | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: sluice
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .shard }}
sluice.dev/shard: {{ . }}
{{- end }}
{{- end }}

{{/*
The image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Checks of combinations of values that cannot work; rendering fails with a message.
*/}}
{{- define "sluice.validateValues" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas=%d needs leaderElection.enabled=true: without leader election every replica would reconcile the same Canaries. Set leaderElection.enabled=true or replicas=1." (int .Values.replicas)) }}
{{- end }}
{{- if lt (int .Values.replicas) 0 }}
{{- fail "replicas must be 0 or more" }}
{{- end }}
{{- if lt (int .Values.maxConcurrentReleases) 0 }}
{{- fail "maxConcurrentReleases must be 0 (no limit) or more" }}
{{- end }}
{{- range .Values.shards }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (toString .)) }}
{{- fail (printf "shards: %q is not a valid shard name: use lower-case letters, digits and '-' (it names a Deployment and is a label value)" (toString .)) }}
{{- end }}
{{- end }}
{{- end }}
