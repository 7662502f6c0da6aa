{{/* Names and labels. */}}
{{- define "steward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "steward.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The components, in a fixed order, and those that own a database schema. */}}
{{- define "steward.components" -}}gateway accounts billing quotas audit notifications{{- end -}}
{{- define "steward.dataComponents" -}}accounts billing quotas audit notifications{{- end -}}

{{- define "steward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "steward.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* dict "root" $ "component" "accounts" (component may be empty) */}}
{{- define "steward.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "steward.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: steward
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "steward.componentName" -}}
{{- printf "%s-%s" (include "steward.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "steward.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "steward.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "steward.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Mount paths inside the pods. */}}
{{- define "steward.configPath" -}}/etc/steward/config/steward.toml{{- end -}}
{{- define "steward.signingKeyPath" -}}/etc/steward/keys/signing-key{{- end -}}
{{- define "steward.chainKeyPath" -}}/etc/steward/keys/audit-chain-key{{- end -}}
{{- define "steward.totpKeyPath" -}}/etc/steward/keys/totp-key{{- end -}}
{{- define "steward.spoolPath" -}}/var/lib/steward/refusal-spool{{- end -}}
{{- define "steward.checkpointPath" -}}/var/lib/steward/audit-checkpoints{{- end -}}
{{- define "steward.smtpCaDir" -}}/etc/steward/smtp-ca{{- end -}}

{{/* Whether the gateway runs as a StatefulSet (a spool claim per pod). */}}
{{- define "steward.gatewayStateful" -}}
{{- if .Values.gateway.refusalSpool.persistence.enabled }}true{{ end -}}
{{- end -}}

{{/*
The Secret and key a component's key file comes from, as JSON {"secret", "key"}:
dict "root" $ "block" <values block with value/existingSecret/existingSecretKey>
"chartKey" <the key in the chart's auth Secret> "what" <value path, for errors>.
*/}}
{{- define "steward.keyRef" -}}
{{- if .block.existingSecret -}}
{{- dict "secret" .block.existingSecret "key" .block.existingSecretKey | toJson -}}
{{- else if .block.value -}}
{{- dict "secret" (include "steward.keysSecretName" .root) "key" .chartKey | toJson -}}
{{- else -}}
{{- fail (printf "%s.value (base64 of 32 random bytes: head -c 32 /dev/urandom | base64) or %s.existingSecret is required" .what .what) -}}
{{- end -}}
{{- end -}}

{{- define "steward.databaseSecretName" -}}{{ include "steward.fullname" . }}-database{{- end -}}
{{- define "steward.migrateSecretName" -}}{{ include "steward.fullname" . }}-migrate-database{{- end -}}
{{- define "steward.authSecretName" -}}
{{- default (printf "%s-auth" (include "steward.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}
{{- define "steward.keysSecretName" -}}{{ include "steward.fullname" . }}-keys{{- end -}}
{{- define "steward.chainKeyRef" -}}
{{- include "steward.keyRef" (dict "root" . "block" .Values.audit.chainKey "chartKey" "audit-chain-key" "what" "audit.chainKey") -}}
{{- end -}}
{{- define "steward.totpKeyRef" -}}
{{- include "steward.keyRef" (dict "root" . "block" .Values.accounts.totpKey "chartKey" "totp-key" "what" "accounts.totpKey") -}}
{{- end -}}
{{- define "steward.smtpSecretName" -}}
{{- default (printf "%s-smtp" (include "steward.fullname" .)) .Values.notifications.smtp.existingSecret -}}
{{- end -}}

{{/*
Where a component's STEWARD_DATABASE_URL comes from, as JSON
{"own": bool, "secret": name, "key": key}: its own `database` block first,
then the shared `database`. `steward serve` reads one database_url per
process, so a per-component URL is simply that process' STEWARD_DATABASE_URL.
`chartSecret` names the chart-managed Secret to use for values given inline
(the regular one for Deployments, the hook copy for the migration Job).
*/}}
{{- define "steward.databaseRef" -}}
{{- $root := .root -}}
{{- $c := index $root.Values .component -}}
{{- $db := $c.database -}}
{{- if $db.existingSecret -}}
{{- dict "own" true "secret" $db.existingSecret "key" $db.existingSecretKey | toJson -}}
{{- else if $db.url -}}
{{- dict "own" true "secret" .chartSecret "key" (printf "%s-database-url" .component) | toJson -}}
{{- else if $root.Values.database.existingSecret -}}
{{- dict "own" false "secret" $root.Values.database.existingSecret "key" $root.Values.database.existingSecretKey | toJson -}}
{{- else if $root.Values.database.url -}}
{{- dict "own" false "secret" .chartSecret "key" "database-url" | toJson -}}
{{- else -}}
{{- fail (printf "%s needs a PostgreSQL: set database.url or database.existingSecret (or %s.database.url / %s.database.existingSecret)" .component .component .component) -}}
{{- end -}}
{{- end -}}

{{/* Whether the chart writes any database URL into a Secret of its own. */}}
{{- define "steward.hasInlineDatabase" -}}
{{- $any := .Values.database.url -}}
{{- range $c := splitList " " (include "steward.dataComponents" .) -}}
{{- $v := index $.Values $c -}}
{{- if and $v.enabled $v.database.url -}}{{- $any = true -}}{{- end -}}
{{- end -}}
{{- if $any -}}true{{- end -}}
{{- end -}}

{{/* Data for the chart's database Secrets. */}}
{{- define "steward.databaseSecretData" -}}
{{- with .Values.database.url }}
database-url: {{ . | b64enc | quote }}
{{- end }}
{{- range $c := splitList " " (include "steward.dataComponents" .) }}
{{- $v := index $.Values $c }}
{{- if and $v.enabled $v.database.url }}
{{ $c }}-database-url: {{ $v.database.url | b64enc | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The whole steward.toml as a dict (JSON): the shared `config`, the component
blocks' `config`, and what the chart knows (listen addresses, the key file,
the Services of the enabled components).
*/}}
{{- define "steward.configDict" -}}
{{- $root := . -}}
{{- $fullname := include "steward.fullname" . -}}
{{- $cfg := deepCopy .Values.config -}}
{{- if not $cfg.otlp_endpoint -}}{{- $_ := unset $cfg "otlp_endpoint" -}}{{- end -}}
{{- $svc := dict -}}
{{- range $c := splitList " " (include "steward.dataComponents" .) -}}
{{- $v := index $root.Values $c -}}
{{- if $v.enabled -}}
{{- $_ := set $svc $c (printf "http://%s-%s:%d" $fullname $c (int $v.port)) -}}
{{- end -}}
{{- end -}}
{{- $auth := deepCopy (default dict $cfg.auth) -}}
{{- $_ := set $auth "signing_key_file" (include "steward.signingKeyPath" .) -}}
{{- if and $svc.accounts (not $auth.accounts_endpoint) -}}
{{- $_ := set $auth "accounts_endpoint" $svc.accounts -}}
{{- end -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- $server := deepCopy (default dict $cfg.server) -}}
{{- $_ := set $server "trusted_proxies" .Values.trustedProxies.services -}}
{{- $_ := set $cfg "server" $server -}}
{{- $outbox := deepCopy (default dict $cfg.outbox) -}}
{{- if and $svc.quotas (not $outbox.quotas_endpoint) -}}
{{- $_ := set $outbox "quotas_endpoint" $svc.quotas -}}
{{- end -}}
{{- if and $svc.billing (not $outbox.erasure_endpoints) -}}
{{- $_ := set $outbox "erasure_endpoints" (list $svc.billing) -}}
{{- end -}}
{{- if and .Values.audit.enabled (not $outbox.audit_endpoint) -}}
{{- $_ := set $outbox "audit_endpoint" (printf "http://%s-audit:%d" $fullname (int .Values.audit.port)) -}}
{{- end -}}
{{- if and .Values.notifications.enabled (not $outbox.notifications_endpoint) -}}
{{- $_ := set $outbox "notifications_endpoint" (printf "http://%s-notifications:%d" $fullname (int .Values.notifications.port)) -}}
{{- end -}}
{{- $_ := set $cfg "outbox" $outbox -}}
{{- $backends := deepCopy $svc -}}
{{- range $c := splitList " " (include "steward.components" .) -}}
{{- $v := index $root.Values $c -}}
{{- if $v.enabled -}}
{{- $section := deepCopy (default dict $v.config) -}}
{{- $_ := set $section "listen" (printf "0.0.0.0:%d" (int $v.port)) -}}
{{- if eq $c "gateway" -}}
{{- $_ := set $section "backends" (mergeOverwrite $backends (default dict $section.backends)) -}}
{{- $_ := set $section "refusal_spool_dir" (include "steward.spoolPath" $root) -}}
{{- with $root.Values.trustedProxies.gateway -}}{{- $_ := set $section "trusted_proxies" . -}}{{- end -}}
{{- end -}}
{{- if eq $c "accounts" -}}
{{- $identity := deepCopy (default dict $section.identity) -}}
{{- $_ := set $identity "totp_key_file" (include "steward.totpKeyPath" $root) -}}
{{- $_ := set $section "identity" $identity -}}
{{- end -}}
{{- if eq $c "audit" -}}
{{- $_ := set $section "chain_key_file" (include "steward.chainKeyPath" $root) -}}
{{- $_ := set $section "checkpoint_dir" (include "steward.checkpointPath" $root) -}}
{{- end -}}
{{- if eq $c "quotas" -}}
{{- if and $svc.accounts (not $section.accounts_endpoint) -}}
{{- $_ := set $section "accounts_endpoint" $svc.accounts -}}
{{- end -}}
{{- end -}}
{{- if eq $c "notifications" -}}
{{- $smtp := deepCopy (default dict $section.smtp) -}}
{{- if $v.smtp.host -}}
{{- $_ := set $smtp "host" $v.smtp.host -}}
{{- $_ := set $smtp "port" (int $v.smtp.port) -}}
{{- $_ := set $smtp "tls" $v.smtp.tls -}}
{{- with $v.smtp.from -}}{{- $_ := set $smtp "from" . -}}{{- end -}}
{{- if $v.smtp.caConfigMap -}}
{{- $_ := set $smtp "ca_file" (printf "%s/ca.pem" (include "steward.smtpCaDir" $root)) -}}
{{- end -}}
{{- end -}}
{{- if $smtp -}}{{- $_ := set $section "smtp" $smtp -}}{{- end -}}
{{- end -}}
{{- $_ := set $cfg $c $section -}}
{{- end -}}
{{- end -}}
{{- if gt (int .Values.metrics.adminPort) 0 -}}
{{- $_ := set $cfg "metrics" (dict "listen" (printf "0.0.0.0:%d" (int .Values.metrics.adminPort))) -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* TOML rendering of a dict: dict "table" $t "path" (list ...) */}}
{{- define "steward.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "steward.tomlValue" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}{{ toJson $v }}
{{- else if kindIs "bool" $v -}}{{ ternary "true" "false" $v }}
{{- else if kindIs "float64" $v -}}
{{- if eq (floor $v) $v -}}{{ printf "%d" (int64 $v) }}{{- else -}}{{ printf "%v" $v }}{{- end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) -}}{{ printf "%d" $v }}
{{- else if kindIs "slice" $v -}}
{{- $items := list -}}
{{- range $v -}}{{- $items = append $items (include "steward.tomlValue" .) -}}{{- end -}}
[{{ join ", " $items }}]
{{- else if kindIs "map" $v -}}
{{- $items := list -}}
{{- range $k, $x := $v -}}{{- $items = append $items (printf "%s = %s" (include "steward.tomlKey" $k) (include "steward.tomlValue" $x)) -}}{{- end -}}
{ {{- join ", " $items -}} }
{{- else -}}
{{- fail (printf "cannot write %v (%s) as TOML" $v (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{- define "steward.toml" -}}
{{- $table := .table -}}
{{- $path := .path -}}
{{- range $k, $v := $table }}
{{- if not (kindIs "map" $v) }}
{{ include "steward.tomlKey" $k }} = {{ include "steward.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := $table }}
{{- if kindIs "map" $v }}
{{- $sub := append $path (include "steward.tomlKey" $k) }}
{{- $scalars := 0 }}
{{- range $x := $v }}{{ if not (kindIs "map" $x) }}{{ $scalars = add1 $scalars }}{{ end }}{{ end }}
{{- if gt $scalars 0 }}

[{{ join "." $sub }}]
{{- end }}
{{- include "steward.toml" (dict "table" $v "path" $sub) }}
{{- end }}
{{- end }}
{{- end -}}
