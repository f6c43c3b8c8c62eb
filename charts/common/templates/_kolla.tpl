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

{{/*
Kolla config.json of one component. Args: dict root, c (the component's values), schema (true: the
component waits for the chart's schemaCheck when it depends on the database; false for the db-sync Job,
which makes the schema).
*/}}
{{- define "common.configJson" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $files := list -}}
{{- if ne (toString .c.installConfigFiles) "false" }}
{{- if include "common.hardened" (dict "root" $root "c" .c) }}
{{- /* configDir is an emptyDir in a hardened pod: it hides the files the image put there (paste ini,
rootwrap, ...), so they are copied from the wheel's etc folder first; the rendered files come after. */}}
{{- $files = append $files (dict "source" (printf "/var/lib/kolla/venv/etc/%s/*" $v.service) "dest" (printf "%s/" $v.configDir) "owner" (printf "%s:%s" $v.user $v.user) "perm" "0600" "merge" true "optional" true) }}
{{- end }}
{{- range $name := keys $v.conf | sortAlpha }}
{{- $files = append $files (dict "source" (printf "%s/%s" (include "common.configFilesDir" $root) $name) "dest" (printf "%s/%s" $v.configDir $name) "owner" (printf "%s:%s" $v.user $v.user) "perm" "0600" "template" true) }}
{{- end }}
{{- range $v.secretFolders | default list }}
{{- $files = append $files (dict "source" (printf "%s/%s" (include "common.secretFoldersDir" $root) .name) "dest" .dest "owner" (printf "%s:%s" $v.user $v.user) "perm" "0600") }}
{{- end }}
{{- end }}
{{- $config := dict "command" (tpl .c.command $root) "user" $v.user "config_files" $files }}
{{- $deps := list }}
{{- range .c.dependencies }}
{{- $endpoint := index $v.global.endpoints . }}
{{- if not $endpoint }}{{ fail (printf "dependency %q is not in global.endpoints" .) }}{{ end }}
{{- $deps = append $deps (dict "tcp" $endpoint) }}
{{- end }}
{{- $checks := .c.checks | default list }}
{{- if and .schema $v.schemaCheck (has "database" (.c.dependencies | default list)) }}
{{- $checks = prepend $checks $v.schemaCheck }}
{{- end }}
{{- range $checks }}
{{- $deps = append $deps (dict "command" (tpl . $root)) }}
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
    {{- include "common.configJson" (dict "root" $root "c" $c "schema" true) | nindent 4 }}
{{- end }}
{{- end }}
{{- if .Values.dbSync.enabled }}
  db-sync.json: |
    {{- include "common.configJson" (dict "root" $root "c" .Values.dbSync "schema" false) | nindent 4 }}
{{- end }}
{{- include "common.jobConfigs" . }}
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
{{- $names := .Values.globalSecrets | default list }}
{{- if (.Values.registration | default dict).enabled }}
{{- $names = append $names "keystone_admin_password" | uniq }}
{{- end }}
{{- range $name := $names }}
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
{{- if include "common.hardened" . }}
- name: KOLLA_ENTRY_OVERLAY
  value: /var/lib/kolla-entry/overlay
{{- end }}
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
  {{- with .c.env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
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
{{- $hardened := include "common.hardened" . }}
{{- if .c.privileged }}
securityContext:
  privileged: true
{{- else if $hardened }}
securityContext:
  {{- include "common.containerSecurity" .root | nindent 2 }}
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
  {{- if .root.Values.secretFolders }}
  - name: secret-folders
    mountPath: {{ include "common.secretFoldersDir" $root }}/
    readOnly: true
  {{- end }}
  {{- if $hardened }}
  {{- range include "common.writableDirs" .root | fromJsonArray }}
  - name: {{ .name }}
    mountPath: {{ .path }}
  {{- end }}
  {{- end }}
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
{{- with .root.Values.secretFolders }}
{{ include "common.secretFoldersVolume" $.root }}
{{- end }}
{{- if include "common.hardened" . }}
{{- range include "common.writableDirs" .root | fromJsonArray }}
- name: {{ .name }}
  emptyDir: {{ if eq .name "kolla-entry-state" }}{medium: Memory}{{ else }}{}{{ end }}
{{- end }}
{{- end }}
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
      {{- if include "common.hardened" . }}
      securityContext:
        {{- include "common.podSecurity" $root | nindent 8 }}
      {{- end }}
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
      {{- if include "common.hardened" (dict "root" $root "c" $c) }}
      securityContext:
        {{- include "common.podSecurity" $root | nindent 8 }}
      {{- end }}
      containers:
        - {{ include "common.kollaContainer" (dict "root" $root "name" "db-sync" "c" $c) | indent 10 | trim }}
      volumes:
        {{- include "common.kollaVolumes" (dict "root" $root "c" $c) | nindent 8 }}
{{- end }}
{{- end -}}

{{/*
Hardened pods (issue #16, charts/README.md "Hardened pods"): a component runs hardened unless the region turns
it off (global.hardening.enabled), the chart does (hardening.enabled), or the component needs privileges
(privileged, hostNetwork) or sets hardened: false. Args: dict root, c. Prints "true" or nothing.
*/}}
{{- define "common.hardened" -}}
{{- $g := .root.Values.global.hardening | default dict -}}
{{- $h := .root.Values.hardening | default dict -}}
{{- if and (ne (toString $g.enabled) "false") $h.enabled (not .c.privileged) (not .c.hostNetwork) (ne (toString .c.hardened) "false") -}}
true
{{- end -}}
{{- end -}}

{{/* The pod securityContext of a hardened pod: the service's Kolla uid and gid (.Values.uid). */}}
{{- define "common.podSecurity" -}}
{{- if not .Values.uid }}{{ fail (printf "%s: hardening needs .Values.uid (the Kolla uid of images/%s/image.env)" .Values.service .Values.service) }}{{ end -}}
runAsUser: {{ .Values.uid }}
runAsGroup: {{ .Values.uid }}
runAsNonRoot: true
fsGroup: {{ .Values.uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The container securityContext of a hardened pod (uid and gid repeated: a container's own wins). */}}
{{- define "common.containerSecurity" -}}
runAsUser: {{ .Values.uid }}
runAsGroup: {{ .Values.uid }}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The writable folders of a hardened container, each an emptyDir (JSON list of {name, path}): kolla-entry's
overlay and state folder, the config destination, /tmp, the service's home and state (/var/lib/<service>,
which holds lock_path) and the chart's hardening.writableDirs.
*/}}
{{- define "common.writableDirs" -}}
{{- $v := .Values -}}
{{- $dirs := list (dict "name" "kolla-entry-overlay" "path" "/var/lib/kolla-entry/overlay") (dict "name" "kolla-entry-state" "path" "/run/kolla-entry") (dict "name" "config-dir" "path" $v.configDir) (dict "name" "tmp" "path" "/tmp") (dict "name" "service-state" "path" (printf "/var/lib/%s" $v.service)) -}}
{{- range $i, $path := ($v.hardening | default dict).writableDirs | default list }}
{{- $dirs = append $dirs (dict "name" (printf "writable-%d" $i) "path" $path) }}
{{- end -}}
{{- toJson $dirs -}}
{{- end -}}
