{{/* Names and labels. */}}
{{- define "easel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "easel.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "easel.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "easel.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels of one role's objects: dict "root" $ "role" "api"|"worker". */}}
{{- define "easel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "easel.selectorLabels" . }}
{{- end }}

{{- define "easel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "easel.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "easel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "easel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret a reference reads: the chart's own with secrets.create. */}}
{{- define "easel.secretName" -}}
{{- if .root.Values.secrets.create }}
{{- include "easel.fullname" .root }}
{{- else }}
{{- .name }}
{{- end }}
{{- end }}

{{- define "easel.c2pa" -}}
{{- if ne (toString (dig "provenance" "c2pa" true .Values.config)) "false" }}true{{ end }}
{{- end }}

{{/* Where the C2PA Secret's files are mounted. */}}
{{- define "easel.c2paDir" -}}/etc/easel/c2pa{{- end }}

{{/*
easel.toml: .Values.config plus the keys the chart owns. Helm reads every
number of the values as a float, which toToml would write as 30.0 or
1.6777216e+07, and Easel's integer keys refuse those; so whole numbers are
turned back into integers first (a float key such as
queue.assumed_job_seconds accepts an integer).
*/}}
{{- define "easel.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "data_dir" .Values.dataDir }}
{{- $server := default dict (get $cfg "server") }}
{{- $_ = set $server "listen" (printf "0.0.0.0:%d" (int .Values.containerPort)) }}
{{- $_ = set $cfg "server" $server }}
{{- if include "easel.c2pa" . }}
{{- $prov := default dict (get $cfg "provenance") }}
{{- $_ = set $prov "certificate" (printf "%s/certificate.pem" (include "easel.c2paDir" .)) }}
{{- $_ = set $prov "private_key" (printf "%s/private-key.pem" (include "easel.c2paDir" .)) }}
{{- $_ = set $cfg "provenance" $prov }}
{{- end }}
{{- include "easel.wholeNumbersToInts" $cfg }}
{{- toToml $cfg }}
{{- end }}

{{/* Turns whole float64 values of a map, at any depth, into int64, in place. */}}
{{- define "easel.wholeNumbersToInts" -}}
{{- $m := . }}
{{- range $k, $v := $m }}
{{- if and (kindIs "float64" $v) (eq $v (floor $v)) }}
{{- $_ := set $m $k (int64 $v) }}
{{- else if kindIs "map" $v }}
{{- include "easel.wholeNumbersToInts" $v }}
{{- else if kindIs "slice" $v }}
{{- range $v }}{{ if kindIs "map" . }}{{ include "easel.wholeNumbersToInts" . }}{{ end }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "easel.shutdownGraceSeconds" -}}
{{- int (dig "server" "shutdown_grace_seconds" 30 .Values.config) }}
{{- end }}

{{/* Image of a role: the CUDA tag for GPU workers. */}}
{{- define "easel.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag }}
{{- if and (eq .role "worker") .root.Values.worker.gpu.enabled }}
{{- $tag = default (printf "%s-cuda" $tag) .root.Values.worker.gpu.imageTag }}
{{- end }}
{{- printf "%s:%s" .root.Values.image.repository $tag }}
{{- end }}

{{/* Environment of both roles: the secrets and the S3 settings. */}}
{{- define "easel.env" -}}
{{- $v := .root.Values -}}
- name: EASEL_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ include "easel.secretName" (dict "root" .root "name" $v.secrets.databaseUrl.name) }}
      key: {{ $v.secrets.databaseUrl.key }}
- name: EASEL_URLS__SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "easel.secretName" (dict "root" .root "name" $v.secrets.urlSigningKey.name) }}
      key: {{ $v.secrets.urlSigningKey.key }}
{{- if or $v.secrets.s3.name $v.secrets.create }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "easel.secretName" (dict "root" .root "name" $v.secrets.s3.name) }}
      key: {{ $v.secrets.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "easel.secretName" (dict "root" .root "name" $v.secrets.s3.name) }}
      key: {{ $v.secrets.s3.secretAccessKeyKey }}
{{- end }}
{{- with $v.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $v.s3.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The pod template of a role: dict "root" $ "role" "api"|"worker". The two
roles differ in their arguments, resources, probes and, for GPU workers,
image, device and scheduling; everything else is shared.
*/}}
{{- define "easel.podTemplate" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $c := index $v .role }}
{{- $gpu := and (eq .role "worker") $v.worker.gpu.enabled }}
{{- $preStop := 0 }}
{{- if eq .role "api" }}{{ $preStop = int $v.api.preStopSleepSeconds }}{{ end -}}
metadata:
  labels:
    {{- include "easel.selectorLabels" . | nindent 4 }}
    {{- with $c.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "easel.config" $root | sha256sum }}
    {{- if $v.metrics.podAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $v.containerPort | quote }}
    prometheus.io/path: /metrics
    {{- end }}
    {{- with $c.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "easel.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  # The shutdown grace, the preStop pause and a margin: a worker always has
  # its whole grace to finish or requeue its batch after SIGTERM.
  terminationGracePeriodSeconds: {{ add (include "easel.shutdownGraceSeconds" $root) $preStop $v.terminationExtraSeconds }}
  containers:
    - name: easel
      image: {{ include "easel.image" . | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: [serve, --role, {{ .role }}, --config, /etc/easel/easel.toml]
      ports:
        - name: http
          containerPort: {{ $v.containerPort }}
      env:
        {{- include "easel.env" . | nindent 8 }}
        {{- if $gpu }}
        - name: EASEL_POOL__DEVICE
          value: cuda
        {{- end }}
        {{- with $c.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $c.startupProbe }}
      startupProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if gt $preStop 0 }}
      lifecycle:
        preStop:
          exec:
            command: [sleep, {{ $preStop | quote }}]
      {{- end }}
      resources:
        {{- if $gpu }}
        {{- $res := deepCopy $v.worker.gpu.resources }}
        {{- $limits := default dict (get $res "limits") }}
        {{- $_ := set $limits "nvidia.com/gpu" (int $v.worker.gpu.count) }}
        {{- $_ = set $res "limits" $limits }}
        {{- toYaml $res | nindent 8 }}
        {{- else }}
        {{- toYaml $c.resources | nindent 8 }}
        {{- end }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/easel/easel.toml
          subPath: easel.toml
          readOnly: true
        - name: data
          mountPath: {{ $v.dataDir }}
        - name: tmp
          mountPath: /tmp
        {{- if include "easel.c2pa" $root }}
        - name: c2pa
          mountPath: {{ include "easel.c2paDir" $root }}
          readOnly: true
        {{- end }}
        {{- if and $v.models.pvc.enabled (ne .role "api") }}
        - name: models
          mountPath: {{ $v.models.pvc.mountPath }}
          {{- with $v.models.pvc.subPath }}
          subPath: {{ . }}
          {{- end }}
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "easel.fullname" $root }}
    - name: data
      emptyDir:
        sizeLimit: 1Gi
    - name: tmp
      emptyDir:
        sizeLimit: 1Gi
    {{- if include "easel.c2pa" $root }}
    - name: c2pa
      secret:
        secretName: {{ include "easel.secretName" (dict "root" $root "name" $v.secrets.c2pa.name) }}
        defaultMode: 0440
        items:
          - key: {{ $v.secrets.c2pa.certificateKey }}
            path: certificate.pem
          - key: {{ $v.secrets.c2pa.privateKeyKey }}
            path: private-key.pem
    {{- end }}
    {{- if and $v.models.pvc.enabled (ne .role "api") }}
    - name: models
      persistentVolumeClaim:
        claimName: {{ $v.models.pvc.claimName }}
        readOnly: true
    {{- end }}
  {{- $nodeSelector := $c.nodeSelector }}
  {{- $tolerations := $c.tolerations }}
  {{- if $gpu }}
  {{- $nodeSelector = merge (deepCopy $c.nodeSelector) $v.worker.gpu.nodeSelector }}
  {{- $tolerations = concat $c.tolerations $v.worker.gpu.tolerations }}
  {{- end }}
  {{- with $nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
