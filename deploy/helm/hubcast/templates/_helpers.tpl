{{- define "hubcast.labels" -}}
app.kubernetes.io/part-of: hubcast
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "hubcast.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The backplane URL of the redis values; the password comes from $(REDIS_PASSWORD). */}}
{{- define "hubcast.redisUrl" -}}
{{- $r := .Values.redis -}}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (ne $r.passwordSecretKey "") -}}
{{- if eq $r.mode "sentinel" -}}
redis+sentinel://{{ $auth }}{{ join "," $r.addresses }}/{{ $r.sentinelService }}/{{ $r.database }}
{{- else if eq $r.mode "cluster" -}}
redis+cluster://{{ $auth }}{{ join "," $r.addresses }}
{{- else -}}
redis://{{ $auth }}{{ first $r.addresses }}/{{ $r.database }}
{{- end -}}
{{- end -}}

{{- define "hubcast.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end -}}

{{/* Environment shared by the gateways and the control API. */}}
{{- define "hubcast.commonEnv" -}}
- name: HUBCAST_LOG_FORMAT
  value: {{ .Values.gateway.logFormat | quote }}
{{- if ne .Values.redis.passwordSecretKey "" }}
{{ include "hubcast.secretEnv" (dict "name" "REDIS_PASSWORD" "secret" .Values.auth.existingSecret "key" .Values.redis.passwordSecretKey) }}
{{- end }}
- name: HUBCAST_BACKPLANE
  value: {{ include "hubcast.redisUrl" . | quote }}
- name: HUBCAST_BACKPLANE_PREFIX
  value: {{ .Values.redis.prefix | quote }}
{{ include "hubcast.secretEnv" (dict "name" "HUBCAST_JWT_SECRET" "secret" .Values.auth.existingSecret "key" .Values.auth.jwtSecretKey) }}
{{ include "hubcast.secretEnv" (dict "name" "HUBCAST_ACCESS_KEY" "secret" .Values.auth.existingSecret "key" .Values.auth.accessKeyKey) }}
{{- end -}}

{{- define "hubcast.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "hubcast.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
