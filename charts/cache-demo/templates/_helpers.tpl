{{/*
Labels of a component's pods: those of cache-demo-ctl, with Helm as the manager. No chart version here, so a
chart bump does not restart every pod. Call with (dict "root" $ "name" "redis" "component" "cache").
*/}}
{{- define "cache-demo.podLabels" -}}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/instance: cache-demo
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: cache-demo
{{- end }}

{{/*
Recommended labels of one object: the pod labels and the chart's version. Same call as cache-demo.podLabels.
*/}}
{{- define "cache-demo.labels" -}}
{{ include "cache-demo.podLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
The labels that select a component's pods. The instance is always cache-demo, whatever the release is called:
Deployment selectors are immutable, and cache-demo-ctl (status, a later up) selects with these very labels.
Call with (dict "name" "redis").
*/}}
{{- define "cache-demo.selectorLabels" -}}
app.kubernetes.io/instance: cache-demo
app.kubernetes.io/name: {{ .name }}
{{- end }}

{{/*
Object metadata: name, namespace, labels, and the scrape annotations when "scrapePort" is given. Call with
(dict "root" $ "object" "postgres" "name" "postgres" "component" "database").
*/}}
{{- define "cache-demo.metadata" -}}
metadata:
  {{- with .scrapePort }}
  annotations:
    {{- include "cache-demo.scrapeAnnotations" . | nindent 4 }}
  {{- end }}
  labels:
    {{- include "cache-demo.labels" . | nindent 4 }}
  name: {{ .object }}
  namespace: {{ .root.Release.Namespace }}
{{- end }}

{{/*
The prometheus.io annotations a Prometheus with the usual Kubernetes scrape configuration follows. Call with
the port.
*/}}
{{- define "cache-demo.scrapeAnnotations" -}}
prometheus.io/path: /metrics
prometheus.io/port: {{ . | quote }}
prometheus.io/scrape: "true"
{{- end }}

{{/*
Pod security context: non-root, RuntimeDefault seccomp. Call with (dict "uid" 70 "gid" 70).
*/}}
{{- define "cache-demo.podSecurity" -}}
securityContext:
  fsGroup: {{ .gid }}
  runAsGroup: {{ .gid }}
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{/*
Container security context. Call with the read-only-root flag.
*/}}
{{- define "cache-demo.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop:
    - ALL
  readOnlyRootFilesystem: {{ . }}
  runAsNonRoot: true
{{- end }}

{{/*
The Secret the pods read: the one this chart generates, or existingSecret.
*/}}
{{- define "cache-demo.secretName" -}}
{{ .Values.existingSecret | default "cache-demo-credentials" }}
{{- end }}

{{/*
An environment variable from the Secret. Call with (list $ "REDIS_PASSWORD" "redis-password").
*/}}
{{- define "cache-demo.secretEnv" -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      key: {{ index . 2 }}
      name: {{ include "cache-demo.secretName" (index . 0) }}
{{- end }}

{{/*
The Secret's data: every value an existing Secret has (the `lookup` result, empty offline) is kept, a missing
or empty one is generated, as cache-demo-ctl does. Call with the existing Secret.
*/}}
{{- define "cache-demo.secretData" -}}
{{- $data := .data | default dict }}
{{- $values := dict }}
{{- range $key := list "admin-token" "app-db-password" "app-redis-password" "postgres-password" "redis-password" }}
{{- $_ := set $values $key (get $data $key | default (randAlphaNum 32 | b64enc)) }}
{{- end }}
{{- toYaml $values }}
{{- end }}

{{/*
Fails when existingSecret is in the cluster without a value for every key. Not finding it is no error: the
pods wait for it (and offline, every lookup is empty). Call with (dict "name" <its name> "secret" <its lookup>).
*/}}
{{- define "cache-demo.checkExistingSecret" -}}
{{- if .secret }}
{{- $data := .secret.data | default dict }}
{{- $missing := list }}
{{- range $key := list "admin-token" "app-db-password" "app-redis-password" "postgres-password" "redis-password" }}
{{- if not (get $data $key) }}
{{- $missing = append $missing $key }}
{{- end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "Secret %s (existingSecret) has no value for %s" .name (join ", " $missing)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Bytes of a Redis memory size: k/m/g are powers of 1000, kb/mb/gb powers of 1024, case-insensitive, plain
digits are bytes. Fails on anything cache-demo-ctl rejects (other units, less than 1mb).
*/}}
{{- define "cache-demo.redisMemoryBytes" -}}
{{- $value := lower (toString .) }}
{{- $digits := regexFind "^[0-9]+" $value }}
{{- $factors := dict "" 1 "b" 1 "k" 1000 "kb" 1024 "m" 1000000 "mb" 1048576 "g" 1000000000 "gb" 1073741824 }}
{{- $unit := trimPrefix $digits $value }}
{{- $expected := printf "invalid redis.maxmemory %q: a size in Redis notation, 1mb or more (64mb, 1gb)" (toString .) }}
{{- if or (not $digits) (not (hasKey $factors $unit)) }}
{{- fail $expected }}
{{- end }}
{{- $factor := get $factors $unit }}
{{- /* atoi gives 0 for more digits than int64 holds; the bound keeps bytes*2 and the rounding within int64 */}}
{{- $number := atoi $digits }}
{{- if or (gt $number (div 2305843009213693951 $factor)) (lt (mul $number $factor) 1048576) }}
{{- fail $expected }}
{{- end }}
{{- mul $number $factor }}
{{- end }}

{{/*
Resources of the Redis container, derived from maxmemory as cache-demo-ctl derives them: the memory limit is
twice maxmemory rounded up to MiB (Redis' overhead, fragmentation, copy-on-write headroom), at least 128Mi;
the request half of it, at least 64Mi. Call with $.
*/}}
{{- define "cache-demo.redisResources" -}}
{{- $bytes := include "cache-demo.redisMemoryBytes" .Values.redis.maxmemory | atoi }}
{{- $limit := max 128 (div (add (mul $bytes 2) 1048575) 1048576) -}}
limits:
  cpu: 500m
  memory: {{ $limit }}Mi
requests:
  cpu: 50m
  memory: {{ max 64 (div $limit 2) }}Mi
{{- end }}

{{/*
Fails when the release namespace, in the cluster, does not enforce the "restricted" Pod Security Standard.
Offline (helm template, lint, GitOps renders) every lookup is empty and nothing is checked. Call with
(dict "name" <namespace> "namespace" <its lookup> "cluster" <lookup of namespace default>).
*/}}
{{- define "cache-demo.checkNamespace" -}}
{{- $label := printf "kubectl label namespace %s %s --overwrite" .name
  "pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted" }}
{{- $optOut := "(or set podSecurity.requireRestrictedNamespace=false)" }}
{{- if .namespace }}
{{- $labels := .namespace.metadata.labels | default dict }}
{{- if ne (get $labels "pod-security.kubernetes.io/enforce") "restricted" }}
{{- $problem := printf "namespace %s does not enforce the restricted Pod Security Standard" .name }}
{{- fail (printf "%s: %s %s" $problem $label $optOut) }}
{{- end }}
{{- else if .cluster }}
{{- $problem := printf "namespace %s does not exist, and --create-namespace would create it without Pod Security labels" .name }}
{{- fail (printf "%s: kubectl create namespace %s && %s %s" $problem .name $label $optOut) }}
{{- end }}
{{- end }}

{{/*
NetworkPolicy: only the app's pods may reach a component. Call with (dict "root" $ "object" "redis-allow-app" "name" "redis" "component" "cache" "port" 6379).
*/}}
{{- define "cache-demo.allowAppOnly" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
{{ include "cache-demo.metadata" . }}
spec:
  ingress:
  - from:
    - podSelector:
        matchLabels:
          {{- include "cache-demo.selectorLabels" (dict "name" "cache-demo-app") | nindent 10 }}
    ports:
    - port: {{ .port }}
      protocol: TCP
  {{- with .openPort }}
  # Metrics hold no data and no secret: open to a Prometheus in any namespace.
  - ports:
    - port: {{ . }}
      protocol: TCP
  {{- end }}
  podSelector:
    matchLabels:
      {{- include "cache-demo.selectorLabels" . | nindent 6 }}
  policyTypes:
  - Ingress
{{- end }}
