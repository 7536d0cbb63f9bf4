{{/* Names. */}}
{{- define "rivulet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rivulet.fullname" -}}
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

{{- define "rivulet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: common, and selector labels per component (api, worker, redis). */}}
{{- define "rivulet.labels" -}}
helm.sh/chart: {{ include "rivulet.chart" . }}
app.kubernetes.io/name: {{ include "rivulet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rivulet
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "rivulet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rivulet.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "rivulet.componentLabels" -}}
{{ include "rivulet.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "rivulet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rivulet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rivulet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Topology. Without Redis the memory log lives in one process: one pod, in-process worker. */}}
{{- define "rivulet.hasRedis" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret .Values.redis.embedded.enabled }}true{{ end }}
{{- end }}

{{- define "rivulet.workerDeployment" -}}
{{- if and (include "rivulet.hasRedis" .) .Values.worker.enabled }}true{{ end }}
{{- end }}

{{- define "rivulet.apiReplicas" -}}
{{- if include "rivulet.hasRedis" . }}{{ .Values.api.replicas }}{{ else }}1{{ end }}
{{- end }}

{{- define "rivulet.authSecretName" -}}
{{- default (printf "%s-auth" (include "rivulet.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "rivulet.providersSecretName" -}}
{{- if .Values.providers.existingSecret }}
{{- .Values.providers.existingSecret }}
{{- else if or .Values.providers.openaiApiKey .Values.providers.anthropicApiKey }}
{{- printf "%s-providers" (include "rivulet.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Redis URL as an env entry (a Secret reference, or the in-chart Service). */}}
{{- define "rivulet.redisEnv" -}}
{{- if .Values.redis.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
{{- else if .Values.redis.url }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "rivulet.fullname" . }}-redis-url
      key: redis-url
{{- else if .Values.redis.embedded.enabled }}
- name: REDIS_URL
  value: {{ printf "redis://%s-redis:6379/0" (include "rivulet.fullname" .) | quote }}
{{- end }}
{{- end }}

{{/* Environment shared by API and worker containers. */}}
{{- define "rivulet.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.node.name=$(NODE_NAME),service.instance.id=$(POD_NAME),service.version=%s%s" .Chart.AppVersion (ternary (printf ",%s" .Values.otel.resourceAttributes) "" (ne .Values.otel.resourceAttributes "")) | quote }}
{{- include "rivulet.redisEnv" . }}
{{- with (include "rivulet.providersSecretName" .) }}
- name: OPENAI_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: OPENAI_API_KEY
      optional: true
- name: ANTHROPIC_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: ANTHROPIC_API_KEY
      optional: true
{{- end }}
{{- end }}

{{/* API pods only: workers never see API keys or the read-token key. */}}
{{- define "rivulet.authEnv" -}}
{{- if .Values.auth.enabled }}
- name: RIVULET_API_KEYS_FILE
  value: /etc/rivulet/auth/api-keys
- name: RIVULET_READ_TOKEN_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "rivulet.authSecretName" . }}
      key: read-token-secret
{{- end }}
{{- end }}

{{/* Volumes (ctx, auth): the API keys file (re-read on change) and a writable /tmp on a read-only root. */}}
{{- define "rivulet.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and .auth .ctx.Values.auth.enabled }}
- name: auth
  secret:
    secretName: {{ include "rivulet.authSecretName" .ctx }}
    items:
      - key: api-keys
        path: api-keys
{{- end }}
{{- end }}

{{- define "rivulet.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and .auth .ctx.Values.auth.enabled }}
- name: auth
  mountPath: /etc/rivulet/auth
  readOnly: true
{{- end }}
{{- end }}
{{/* HTTP probes on the real endpoints (API and worker both serve them). */}}
{{- define "rivulet.probes" -}}
startupProbe:
  httpGet:
    path: /livez
    port: http
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /livez
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end }}

{{/* What the Secrets read as env are made from (not the generated auth material). */}}
{{- define "rivulet.secretInputs" -}}
{{ .Values.redis.url }}|{{ .Values.redis.existingSecret }}|{{ .Values.redis.existingSecretKey }}|
{{- .Values.providers.existingSecret }}|{{ .Values.providers.openaiApiKey }}|{{ .Values.providers.anthropicApiKey }}|
{{- .Values.auth.existingSecret }}
{{- end }}

{{/* Seconds an API pod may need after SIGTERM: preStop, then uvicorn's drain of in-flight
requests, then (with in-process generations) the worker's own grace before it hands back. */}}
{{- define "rivulet.apiDrainSeconds" -}}
{{- $grace := int (ceil .Values.config.shutdownGraceSeconds) }}
{{- $inProcess := ternary 0 1 (eq (include "rivulet.workerDeployment" .) "true") }}
{{- add .Values.api.preStopSleepSeconds $grace (mul $inProcess $grace) }}
{{- end }}

{{/* Milliseconds in a Gateway API Duration (GEP-2257: "1h", "1m30s", "500ms", "0s"). */}}
{{- define "rivulet.durationMs" -}}
{{- $ms := 0 }}
{{- range regexFindAll "[0-9]+(ms|h|m|s)" . -1 }}
{{- $n := regexFind "^[0-9]+" . | int64 }}
{{- $unit := regexFind "(ms|h|m|s)$" . }}
{{- $ms = add $ms (mul $n (get (dict "h" 3600000 "m" 60000 "s" 1000 "ms" 1) $unit)) }}
{{- end }}
{{- $ms }}
{{- end }}

{{/* Gateway API checks: the policies need the route, and no timeout may cut a Durable Streams
live read (config.sseMaxDurationSeconds long) before the server ends it. */}}
{{- define "rivulet.validateGateway" -}}
{{- $gw := .Values.gateway }}
{{- if and (not $gw.enabled) (or $gw.envoyGateway.enabled $gw.nginxGatewayFabric.enabled) }}
{{- fail "gateway.envoyGateway and gateway.nginxGatewayFabric attach to the chart's HTTPRoute: set gateway.enabled too" }}
{{- end }}
{{- if $gw.enabled }}
{{- /* The longest response the service itself keeps open: a live SSE read or a long-poll. */}}
{{- $longest := maxf .Values.config.sseMaxDurationSeconds .Values.config.longPollTimeoutSeconds }}
{{- $floor := mulf $longest 1000 | int64 }}
{{- $checked := dict "gateway.timeouts.request" $gw.timeouts.request "gateway.timeouts.backendRequest" $gw.timeouts.backendRequest }}
{{- if $gw.envoyGateway.enabled }}
{{- $_ := set $checked "gateway.envoyGateway.requestTimeout" $gw.envoyGateway.requestTimeout }}
{{- $_ := set $checked "gateway.envoyGateway.maxStreamDuration" $gw.envoyGateway.maxStreamDuration }}
{{- end }}
{{- range $key, $value := $checked }}
{{- $ms := include "rivulet.durationMs" $value | int64 }}
{{- if and $value (gt $ms 0) (le $ms $floor) }}
{{- fail (printf "%s (%s) must be 0s or longer than config.sseMaxDurationSeconds and config.longPollTimeoutSeconds (%v s), or the gateway cuts live reads the service would end itself" $key $value $longest) }}
{{- end }}
{{- end }}
{{- if and $gw.nginxGatewayFabric.enabled (ge (int .Values.config.sseHeartbeatSeconds) 60) }}
{{- fail (printf "config.sseHeartbeatSeconds (%v) must be under 60 with gateway.nginxGatewayFabric: NGF keeps nginx's 60 s proxy_read_timeout (its policy cannot raise it), which would cut idle streams" .Values.config.sseHeartbeatSeconds) }}
{{- end }}
{{- $request := include "rivulet.durationMs" $gw.timeouts.request | int64 }}
{{- $backend := include "rivulet.durationMs" $gw.timeouts.backendRequest | int64 }}
{{- if and $gw.timeouts.request $gw.timeouts.backendRequest (gt $request 0) (gt $backend $request) }}
{{- fail (printf "gateway.timeouts.backendRequest (%s) must not exceed gateway.timeouts.request (%s): the Gateway API rejects the HTTPRoute otherwise" $gw.timeouts.backendRequest $gw.timeouts.request) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Configuration checks that the schema cannot express. */}}
{{- define "rivulet.validate" -}}
{{- $drain := include "rivulet.apiDrainSeconds" . | int }}
{{- if le (int .Values.api.terminationGracePeriodSeconds) $drain }}
{{- fail (printf "api.terminationGracePeriodSeconds (%v) must exceed %v s: api.preStopSleepSeconds + config.shutdownGraceSeconds (twice with in-process generations: requests drain, then generations), or pods are killed mid-drain" .Values.api.terminationGracePeriodSeconds $drain) }}
{{- end }}
{{- if and (include "rivulet.workerDeployment" .) (le (int .Values.worker.terminationGracePeriodSeconds) (int (ceil .Values.config.shutdownGraceSeconds))) }}
{{- fail (printf "worker.terminationGracePeriodSeconds (%v) must exceed config.shutdownGraceSeconds (%v), or workers are killed before handing generations back" .Values.worker.terminationGracePeriodSeconds .Values.config.shutdownGraceSeconds) }}
{{- end }}
{{- if and .Values.redis.embedded.enabled (ne (int .Values.redis.port) 6379) }}
{{- fail "redis.port must stay 6379 with redis.embedded.enabled (the in-chart Redis listens there)" }}
{{- end }}
{{- if and .Values.ingress.enabled (le (int .Values.ingress.timeoutSeconds) (int .Values.config.sseHeartbeatSeconds)) }}
{{- fail (printf "ingress.timeoutSeconds (%v) must exceed config.sseHeartbeatSeconds (%v), or the ingress cuts idle streams" .Values.ingress.timeoutSeconds .Values.config.sseHeartbeatSeconds) }}
{{- end }}
{{- include "rivulet.validateGateway" . }}
{{- if and .Values.auth.existingSecret .Values.auth.apiKeys }}
{{- fail "auth.apiKeys are written to the chart-made Secret; with auth.existingSecret put them in that Secret instead" }}
{{- end }}
{{- end }}
