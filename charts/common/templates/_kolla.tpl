{{/*
kolla-entry wiring for an OpenStack service chart. A service chart's values provide:
  service, user, configDir, imageTag, conf, secrets, globalSecrets, components, dbSync (see charts/README.md).
Paths inside the container:
  /var/lib/kolla/config_files/   the <service>-config ConfigMap: one Kolla config.json per component
                                 (<component>.json) and the config files (templates for kolla-entry)
  /var/lib/kolla/secrets/<svc>/  the <service>-secrets Secret, read-only, read by ${file:...} placeholders
  /<service>-patches             the <service>-patches ConfigMap, whole folder, read-only, no subPath
*/}}

{{- define "common.configFilesDir" -}}/var/lib/kolla/config_files{{- end -}}

{{- define "common.secretsDir" -}}/var/lib/kolla/secrets/{{ .Values.service }}{{- end -}}

{{/* The hot-fix patches of the chart (vendored from the repository's patches/<service>/ by `make charts`). */}}
{{- define "common.patchesConfigMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Values.service }}-patches
  labels:
    {{- include "common.labels" (dict "root" . "component" "patches") | nindent 4 }}
{{- $patches := .Files.Glob "patches/*.patch" }}
{{- if $patches }}
data:
  {{- $patches.AsConfig | nindent 2 }}
{{- else }}
data: {}
{{- end }}
{{- end -}}

{{/* Kolla config.json of one component. Args: dict root, c (the component's values). */}}
{{- define "common.configJson" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $files := list -}}
{{- range $name := keys $v.conf | sortAlpha }}
{{- $files = append $files (dict "source" (printf "%s/%s" (include "common.configFilesDir" $root) $name) "dest" (printf "%s/%s" $v.configDir $name) "owner" (printf "%s:%s" $v.user $v.user) "perm" "0600" "template" true) }}
{{- end }}
{{- /* Files from elsewhere than the config ConfigMap (e.g. a Secret volume another Job fills): config.json entries as they are. */}}
{{- range $v.extraConfigFiles | default list }}
{{- $files = append $files . }}
{{- end }}
{{- $config := dict "command" (tpl .c.command $root) "user" $v.user "config_files" $files }}
{{- $deps := list }}
{{- range .c.dependencies }}
{{- $endpoint := index $v.global.endpoints . }}
{{- if not $endpoint }}{{ fail (printf "dependency %q is not in global.endpoints" .) }}{{ end }}
{{- $deps = append $deps (dict "tcp" $endpoint) }}
{{- end }}
{{- if $deps }}{{ $_ := set $config "dependencies" $deps }}{{ end }}
{{- toPrettyJson $config }}
{{- end -}}

{{/* Config files and one config.json per enabled component (and db-sync). No secret value ever lands here. */}}
{{- define "common.configConfigMap" -}}
{{- $root := . -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Values.service }}-config
  labels:
    {{- include "common.labels" (dict "root" . "component" "config") | nindent 4 }}
data:
{{- range $name := keys .Values.components | sortAlpha }}
{{- $c := index $root.Values.components $name }}
{{- if $c.enabled }}
  {{ $name }}.json: |
    {{- include "common.configJson" (dict "root" $root "c" $c) | nindent 4 }}
{{- end }}
{{- end }}
{{- if .Values.dbSync.enabled }}
  db-sync.json: |
    {{- include "common.configJson" (dict "root" $root "c" .Values.dbSync) | nindent 4 }}
{{- end }}
{{- range $name := keys .Values.conf | sortAlpha }}
{{- $conf := index $root.Values.conf $name }}
  {{ $name }}: |
{{- if kindIs "string" $conf }}
    {{- tpl $conf $root | nindent 4 }}
{{- else }}
    {{- include "common.oslo" (dict "root" $root "conf" $conf) | trim | nindent 4 }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The Secret: the chart's own sensitive values (.Values.secrets, set only by the region chart) and the shared
ones it names in .Values.globalSecrets (global.secrets.<name>, set only by the region chart).
A value missing here renders empty, so every chart lints on its own; the chart tests check that the example
region sets every one.
*/}}
{{- define "common.secret" -}}
{{- $root := . -}}
{{- $data := dict }}
{{- range $name := .Values.globalSecrets | default list }}
{{- $_ := set $data $name (dig "secrets" $name "" ($root.Values.global | default dict)) }}
{{- end }}
{{- range $name, $value := .Values.secrets | default dict }}
{{- $_ := set $data $name $value }}
{{- end -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Values.service }}-secrets
  labels:
    {{- include "common.labels" (dict "root" . "component" "secrets") | nindent 4 }}
type: Opaque
{{- if $data }}
data:
{{- range $name := keys $data | sortAlpha }}
  {{ $name }}: {{ index $data $name | toString | b64enc | quote }}
{{- end }}
{{- else }}
data: {}
{{- end }}
{{- end -}}

{{/* Pods roll when a patch, a config file or a secret changes (the seed's charts forgot the patches). */}}
{{- define "common.checksum" -}}
{{- include "common.checksumOf" (list (include "common.patchesConfigMap" .) (include "common.configConfigMap" .) (include "common.secret" .)) -}}
{{- end -}}

{{/* Environment of every kolla-entry container: pod-specific values for ${env:...} placeholders. */}}
{{- define "common.kollaEnv" -}}
- name: KOLLA_CONFIG_STRATEGY
  value: COPY_ALWAYS
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end -}}

{{/*
The container that starts through kolla-entry. The image's ENTRYPOINT is the same command; the chart sets
it explicitly so a pod never depends on how an image was built, and names the component's config.json.
Args: dict root, name (component), c (component values).
*/}}
{{- define "common.kollaContainer" -}}
{{- $root := .root -}}
{{- $svc := .root.Values.service -}}
name: {{ .name }}
image: {{ include "common.image" (dict "root" $root "name" .c.image) }}
imagePullPolicy: {{ .root.Values.global.imagePullPolicy | default "IfNotPresent" }}
command:
  - dumb-init
  - --single-child
  - --
  - kolla-entry
  - run
  - --config
  - {{ include "common.configFilesDir" $root }}/{{ .name }}.json
env:
  {{- include "common.kollaEnv" . | nindent 2 }}
{{- with .c.port }}
ports:
  - name: api
    containerPort: {{ . }}
    protocol: TCP
readinessProbe:
  tcpSocket:
    port: api
  periodSeconds: 10
livenessProbe:
  tcpSocket:
    port: api
  initialDelaySeconds: 30
  periodSeconds: 30
{{- end }}
{{- with .c.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .c.privileged }}
securityContext:
  privileged: true
{{- end }}
volumeMounts:
  - name: kolla-config
    mountPath: {{ include "common.configFilesDir" $root }}/
    readOnly: true
  - name: kolla-secrets
    mountPath: {{ include "common.secretsDir" $root }}/
    readOnly: true
  - name: patches
    mountPath: /{{ $svc }}-patches
    readOnly: true
  {{- with .c.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Volumes behind common.kollaContainer. Args: dict root, c. */}}
{{- define "common.kollaVolumes" -}}
{{- $svc := .root.Values.service -}}
- name: kolla-config
  configMap:
    name: {{ $svc }}-config
- name: kolla-secrets
  secret:
    secretName: {{ $svc }}-secrets
    defaultMode: 0400
- name: patches
  configMap:
    name: {{ $svc }}-patches
{{- with .c.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
One workload (Deployment or DaemonSet) of a component. Args: dict root, name, c, host (optional entry of a
hardware list: name, hostname).
*/}}
{{- define "common.workload" -}}
{{- $root := .root -}}
{{- $svc := .root.Values.service -}}
{{- $kind := .c.kind | default "Deployment" -}}
{{- $fullname := printf "%s-%s" $svc .name -}}
{{- $hostname := .c.hostname -}}
{{- if .host }}
{{- $fullname = printf "%s-%s" $fullname .host.name -}}
{{- $hostname = .host.hostname -}}
{{- end }}
apiVersion: apps/v1
kind: {{ $kind }}
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "common.labels" (dict "root" $root "component" .name) | nindent 4 }}
spec:
  {{- if eq $kind "Deployment" }}
  replicas: {{ if .host }}1{{ else }}{{ .c.replicas | default 1 }}{{ end }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "common.selectorLabels" (dict "root" $root "component" .name) | nindent 6 }}
      {{- with .host }}
      openstack.org/host: {{ .name }}
      {{- end }}
  template:
    metadata:
      labels:
        {{- include "common.labels" (dict "root" $root "component" .name) | nindent 8 }}
        {{- with .host }}
        openstack.org/host: {{ .name }}
        {{- end }}
      annotations:
        checksum/kolla-entry: {{ include "common.checksum" $root }}
    spec:
      {{- include "common.placement" (dict "root" $root "placement" .c.placement "hostname" $hostname) | trim | nindent 6 }}
      {{- if .c.hostNetwork }}
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      {{- end }}
      terminationGracePeriodSeconds: {{ .c.terminationGracePeriodSeconds | default 60 }}
      containers:
        - {{ include "common.kollaContainer" . | indent 10 | trim }}
      volumes:
        {{- include "common.kollaVolumes" . | nindent 8 }}
{{- end -}}

{{/* Every enabled component's workloads, Services for those with a port, and the db-sync Job. */}}
{{- define "common.workloads" -}}
{{- $root := . -}}
{{- range $name := keys .Values.components | sortAlpha }}
{{- $c := index $root.Values.components $name }}
{{- if $c.enabled }}
{{- if $c.perHost }}
{{- range $host := index $root.Values.global $c.perHost | default list }}
---
{{ include "common.workload" (dict "root" $root "name" $name "c" $c "host" $host) }}
{{- end }}
{{- else }}
---
{{ include "common.workload" (dict "root" $root "name" $name "c" $c) }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* A ClusterIP Service for every enabled component with a port, named <service>-<component>. */}}
{{- define "common.services" -}}
{{- $root := . -}}
{{- range $name := keys .Values.components | sortAlpha }}
{{- $c := index $root.Values.components $name }}
{{- if and $c.enabled $c.port (not $c.perHost) }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $root.Values.service }}-{{ $name }}
  labels:
    {{- include "common.labels" (dict "root" $root "component" $name) | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "common.selectorLabels" (dict "root" $root "component" $name) | nindent 4 }}
  ports:
    - name: api
      port: {{ $c.port }}
      targetPort: api
      protocol: TCP
{{- end }}
{{- end }}
{{- end -}}

{{/*
The db-sync Job. Its name ends in a hash of the image and of everything the pods see (patches, config,
secret): a Job's pod template is immutable, so an upgrade that changes any of them creates a new Job
instead of failing, and an upgrade that changes nothing leaves the finished Job alone.
*/}}
{{- define "common.dbSyncJob" -}}
{{- if .Values.dbSync.enabled }}
{{- $root := . -}}
{{- $c := .Values.dbSync -}}
{{- $hash := printf "%s\n%s" (include "common.image" (dict "root" $root "name" $c.image)) (include "common.checksum" $root) | sha256sum | trunc 10 }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Values.service }}-db-sync-{{ $hash }}
  labels:
    {{- include "common.labels" (dict "root" $root "component" "db-sync") | nindent 4 }}
spec:
  backoffLimit: {{ $c.backoffLimit | default 20 }}
  template:
    metadata:
      labels:
        {{- include "common.labels" (dict "root" $root "component" "db-sync") | nindent 8 }}
      annotations:
        checksum/kolla-entry: {{ include "common.checksum" $root }}
    spec:
      restartPolicy: OnFailure
      {{- include "common.placement" (dict "root" $root "placement" "" "hostname" "") | trim | nindent 6 }}
      containers:
        - {{ include "common.kollaContainer" (dict "root" $root "name" "db-sync" "c" $c) | indent 10 | trim }}
      volumes:
        {{- include "common.kollaVolumes" (dict "root" $root "c" $c) | nindent 8 }}
{{- end }}
{{- end -}}
