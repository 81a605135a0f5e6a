#!/usr/bin/env bash
# waf-crs.sh DIR PORT - runs Apache httpd + ModSecurity 2 + the OWASP Core Rule Set in the
# foreground as a WAF verdict service on 127.0.0.1:PORT, its config, logs and pid in DIR.
#   200 for a clean request (any method, any path: a two-line mod_lua handler), 403 when CRS's
#   inbound anomaly score reaches its threshold (blocking mode, paranoia level 1).
# CRS's allowed methods are widened to PUT, PATCH and DELETE (APIs use them). Stop it with
# SIGTERM to the PID this script ends up as (it execs httpd). Needs the Debian packages apache2,
# libapache2-mod-security2 and modsecurity-crs (scripts/test.sh installs them).
set -euo pipefail
DIR=${1:?usage: waf-crs.sh DIR PORT}; PORT=${2:?usage: waf-crs.sh DIR PORT}
MODS=/usr/lib/apache2/modules
for f in /usr/sbin/apache2 "$MODS/mod_security2.so" /usr/share/modsecurity-crs/rules /etc/modsecurity/crs/crs-setup.conf; do
  [[ -e $f ]] || { echo "waf-crs.sh: $f is missing (apt-get install apache2 libapache2-mod-security2 modsecurity-crs)" >&2; exit 3; }
done
mkdir -p "$DIR/tmp" "$DIR/data"
cat >"$DIR/allow.lua" <<'LUA'
function handle(r) r.content_type = "text/plain"; r:puts("allowed\n"); return apache2.OK end
LUA
user=""
if [[ $EUID == 0 ]]; then
  user=$'User www-data\nGroup www-data'
  chown www-data "$DIR/tmp" "$DIR/data"
fi
cat >"$DIR/httpd.conf" <<CONF
ServerRoot "$DIR"
ServerName waf.test
Listen 127.0.0.1:$PORT
PidFile "$DIR/httpd.pid"
DefaultRuntimeDir "$DIR"
Mutex file:$DIR default
ErrorLog "$DIR/error.log"
LogLevel warn
$user
LoadModule mpm_event_module $MODS/mod_mpm_event.so
LoadModule authz_core_module $MODS/mod_authz_core.so
LoadModule unique_id_module $MODS/mod_unique_id.so
LoadModule lua_module $MODS/mod_lua.so
LoadModule security2_module $MODS/mod_security2.so
StartServers 1
ServerLimit 2
ThreadsPerChild 64
MaxRequestWorkers 128
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60
Timeout 10
<Location "/">
  SetHandler lua-script
  LuaMapHandler ".*" "$DIR/allow.lua" handle
  Require all granted
</Location>
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 1048576
SecRequestBodyLimitAction ProcessPartial
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'"
SecResponseBodyAccess Off
SecAuditEngine Off
SecTmpDir "$DIR/tmp"
SecDataDir "$DIR/data"
SecPcreMatchLimit 100000
SecPcreMatchLimitRecursion 100000
SecUnicodeMapFile /etc/modsecurity/unicode.mapping 20127
Include /etc/modsecurity/crs/crs-setup.conf
SecAction "id:900200,phase:1,nolog,pass,t:none,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"
Include /usr/share/modsecurity-crs/rules/*.conf
CONF
exec /usr/sbin/apache2 -f "$DIR/httpd.conf" -DFOREGROUND
