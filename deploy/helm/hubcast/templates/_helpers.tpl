{{/* The prefix of every object's name: fullnameOverride, else the release name. */}}
{{- define "hubcast.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 48 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object (commonLabels last, so they can add but not break the selectors). */}}
{{- define "hubcast.labels" -}}
app.kubernetes.io/part-of: hubcast
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of a component: (dict "root" $ "component" "gateway"). */}}
{{- define "hubcast.selectorLabels" -}}
app.kubernetes.io/name: hubcast-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* Labels of a component's objects. */}}
{{- define "hubcast.componentLabels" -}}
{{ include "hubcast.labels" .root }}
app.kubernetes.io/name: hubcast-{{ .component }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hubcast.image" -}}
{{- $image := .Values.image -}}
{{- $repository := $image.repository -}}
{{- with .Values.global }}{{ with .imageRegistry }}{{ $repository = printf "%s/%s" . $repository }}{{ end }}{{ end -}}
{{- if $image.digest -}}
{{ $repository }}@{{ $image.digest }}
{{- else -}}
{{ $repository }}:{{ $image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "hubcast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ default (printf "%s-hubcast" (include "hubcast.fullname" .)) .Values.serviceAccount.name }}
{{- else -}}
{{ default "default" .Values.serviceAccount.name }}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets: the chart's and global.imagePullSecrets (names or {name: …}). */}}
{{- define "hubcast.imagePullSecrets" -}}
{{- $all := list -}}
{{- range .Values.imagePullSecrets }}{{ $all = append $all (ternary (dict "name" .) . (kindIs "string" .)) }}{{ end -}}
{{- with .Values.global }}{{ range .imagePullSecrets }}{{ $all = append $all (ternary (dict "name" .) . (kindIs "string" .)) }}{{ end }}{{ end -}}
{{- with $all }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The backplane URL, without credentials: the password goes in HUBCAST_BACKPLANE_PASSWORD, never into the
URL, so any character works in it.
*/}}
{{- define "hubcast.backplaneUrl" -}}
{{- $r := .Values.redis -}}
{{- if not $r.enabled -}}
memory
{{- else if $r.url -}}
{{ $r.url }}
{{- else if eq $r.mode "sentinel" -}}
{{ ternary "rediss" "redis" $r.tls.enabled }}+sentinel://{{ join "," $r.addresses }}/{{ $r.sentinelService }}/{{ $r.database }}
{{- else if eq $r.mode "cluster" -}}
{{ ternary "rediss" "redis" $r.tls.enabled }}+cluster://{{ join "," $r.addresses }}
{{- else -}}
{{ ternary "rediss" "redis" $r.tls.enabled }}://{{ first $r.addresses }}/{{ $r.database }}
{{- end -}}
{{- end -}}

{{/* An env entry from a secret key: (dict "root" $ "name" "ENV" "ref" {secretName, key}). */}}
{{- define "hubcast.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.secretName | default .root.Values.auth.existingSecret }}
      key: {{ .ref.key }}
{{- end -}}

{{/* Environment shared by the gateways and the control API. */}}
{{- define "hubcast.commonEnv" -}}
{{- $v := .Values -}}
- name: HUBCAST_LOG
  value: {{ $v.log.level | quote }}
- name: HUBCAST_LOG_FORMAT
  value: {{ $v.log.format | quote }}
- name: HUBCAST_BACKPLANE
  value: {{ include "hubcast.backplaneUrl" . | quote }}
- name: HUBCAST_BACKPLANE_PREFIX
  value: {{ $v.redis.prefix | quote }}
{{- if and $v.redis.enabled $v.redis.password.key }}
{{ include "hubcast.secretEnv" (dict "root" . "name" "HUBCAST_BACKPLANE_PASSWORD" "ref" $v.redis.password) }}
{{- end }}
{{- if and $v.redis.enabled $v.redis.sentinelPassword.key }}
{{ include "hubcast.secretEnv" (dict "root" . "name" "HUBCAST_BACKPLANE_SENTINEL_PASSWORD" "ref" $v.redis.sentinelPassword) }}
{{- end }}
{{- if and $v.redis.enabled $v.redis.tls.caSecret.key }}
- name: HUBCAST_BACKPLANE_CA_FILE
  value: /etc/hubcast/redis-ca/{{ $v.redis.tls.caSecret.key }}
{{- end }}
{{- if $v.auth.jwt.secret.key }}
{{ include "hubcast.secretEnv" (dict "root" . "name" "HUBCAST_JWT_SECRET" "ref" $v.auth.jwt.secret) }}
{{- end }}
{{- with $v.auth.jwt.issuer }}
- name: HUBCAST_JWT_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- with $v.auth.jwt.audience }}
- name: HUBCAST_JWT_AUDIENCE
  value: {{ . | quote }}
{{- end }}
{{- if $v.auth.controlAccessKeys.key }}
{{ include "hubcast.secretEnv" (dict "root" . "name" "HUBCAST_ACCESS_KEY" "ref" $v.auth.controlAccessKeys) }}
{{- end }}
{{- if $v.auth.apiKeySha256.key }}
{{ include "hubcast.secretEnv" (dict "root" . "name" "HUBCAST_API_KEY_SHA256" "ref" $v.auth.apiKeySha256) }}
{{- end }}
{{- if $v.auth.controlAnonymous }}
- name: HUBCAST_CONTROL_ANONYMOUS
  value: "true"
{{- end }}
{{- end -}}

{{/* Volumes for the files the environment points at (Redis and PostgreSQL CAs, the listener's TLS
certificate, JWT public key, JWKS). */}}
{{- define "hubcast.secretVolumes" -}}
{{- $v := .root.Values -}}
{{- if and $v.redis.enabled $v.redis.tls.caSecret.key }}
- name: redis-ca
  secret:
    secretName: {{ $v.redis.tls.caSecret.secretName | default $v.auth.existingSecret }}
    items: [{key: {{ $v.redis.tls.caSecret.key | quote }}, path: {{ $v.redis.tls.caSecret.key | quote }}}]
{{- end }}
{{- if and (eq .component "gateway") $v.history.caSecret.key }}
- name: history-ca
  secret:
    secretName: {{ $v.history.caSecret.secretName | default $v.auth.existingSecret }}
    items: [{key: {{ $v.history.caSecret.key | quote }}, path: {{ $v.history.caSecret.key | quote }}}]
{{- end }}
{{- if and (eq .component "gateway") $v.gateway.tlsSecret }}
- name: tls
  secret:
    secretName: {{ $v.gateway.tlsSecret }}
    items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]
{{- end }}
{{- if and (eq .component "gateway") $v.auth.jwt.publicKey.key }}
- name: jwt-public-key
  secret:
    secretName: {{ $v.auth.jwt.publicKey.secretName | default $v.auth.existingSecret }}
    items: [{key: {{ $v.auth.jwt.publicKey.key | quote }}, path: public-key.pem}]
{{- end }}
{{- if and (eq .component "gateway") $v.auth.jwt.jwks.key }}
- name: jwks
  {{- if $v.auth.jwt.jwks.configMapName }}
  configMap:
    name: {{ $v.auth.jwt.jwks.configMapName }}
    items: [{key: {{ $v.auth.jwt.jwks.key | quote }}, path: jwks.json}]
  {{- else }}
  secret:
    secretName: {{ $v.auth.jwt.jwks.secretName | default $v.auth.existingSecret }}
    items: [{key: {{ $v.auth.jwt.jwks.key | quote }}, path: jwks.json}]
  {{- end }}
{{- end }}
{{- end -}}

{{- define "hubcast.secretVolumeMounts" -}}
{{- $v := .root.Values -}}
{{- if and $v.redis.enabled $v.redis.tls.caSecret.key }}
- {name: redis-ca, mountPath: /etc/hubcast/redis-ca, readOnly: true}
{{- end }}
{{- if and (eq .component "gateway") $v.history.caSecret.key }}
- {name: history-ca, mountPath: /etc/hubcast/history-ca, readOnly: true}
{{- end }}
{{- if and (eq .component "gateway") $v.gateway.tlsSecret }}
- {name: tls, mountPath: /etc/hubcast/tls, readOnly: true}
{{- end }}
{{- if and (eq .component "gateway") $v.auth.jwt.publicKey.key }}
- {name: jwt-public-key, mountPath: /etc/hubcast/jwt-public-key, readOnly: true}
{{- end }}
{{- if and (eq .component "gateway") $v.auth.jwt.jwks.key }}
- {name: jwks, mountPath: /etc/hubcast/jwks, readOnly: true}
{{- end }}
{{- end -}}

{{/*
A probe: the values' probe object as it is, with the default httpGet handler when it names none.
(dict "probe" $values "path" "/ready" "port" "admin")
*/}}
{{- define "hubcast.probe" -}}
{{- $p := omit .probe "enabled" -}}
{{- if not (or $p.httpGet $p.exec $p.tcpSocket $p.grpc) -}}
{{- $_ := set $p "httpGet" (dict "path" .path "port" .port) -}}
{{- end -}}
{{ toYaml $p }}
{{- end -}}

{{/*
The pod-level settings the gateway and the control API share: (dict "root" $ "component" "gateway" "c"
.Values.gateway). Topology spread constraints without a labelSelector get the component's.
*/}}
{{- define "hubcast.podSpecCommon" -}}
{{- $c := .c -}}
serviceAccountName: {{ include "hubcast.serviceAccountName" .root }}
automountServiceAccountToken: {{ .root.Values.serviceAccount.automountToken }}
{{- include "hubcast.imagePullSecrets" .root }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $c.topologySpreadConstraints }}
{{- $constraints := list }}
{{- range $c.topologySpreadConstraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "hubcast.selectorLabels" $ | fromYaml)) }}
{{- end }}
{{- $constraints = append $constraints $constraint }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- with $c.initContainers }}
initContainers:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod template metadata: (dict "root" $ "component" "gateway" "c" .Values.gateway). */}}
{{- define "hubcast.podMetadata" -}}
labels:
  {{- include "hubcast.componentLabels" . | nindent 2 }}
  {{- with .c.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  {{- if eq .component "gateway" }}
  checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
  {{- end }}
  {{- with .c.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* The type-dependent fields of a Service (the values' `service` object). */}}
{{- define "hubcast.serviceSpec" -}}
type: {{ .type }}
{{- if has .type (list "NodePort" "LoadBalancer") }}
{{- with .externalTrafficPolicy }}
externalTrafficPolicy: {{ . }}
{{- end }}
{{- end }}
{{- if eq .type "LoadBalancer" }}
{{- with .loadBalancerClass }}
loadBalancerClass: {{ . }}
{{- end }}
{{- with .loadBalancerSourceRanges }}
loadBalancerSourceRanges:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- with .sessionAffinity }}
sessionAffinity: {{ . }}
{{- if and (eq . "ClientIP") $.sessionAffinityTimeoutSeconds }}
sessionAffinityConfig:
  clientIP: {timeoutSeconds: {{ $.sessionAffinityTimeoutSeconds }}}
{{- end }}
{{- end }}
{{- end -}}
