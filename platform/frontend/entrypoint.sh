#!/bin/sh
# Entrypoint of the ecom reference frontend image (POSIX sh).
#
# Renders the nginx template with the pod's environment into /tmp (the root
# filesystem is read-only) and replaces itself with nginx in the foreground.
#   NGINX_PORT    port to listen on (default 8080)
#   API_BASE_URL  where /api/ is proxied, scheme://host[:port] without a path
#                 (default http://backend-service:8000)
# For tests: NGINX_TEMPLATE (default /etc/ecom-frontend/nginx.conf.template)
# and NGINX_CONF (default /tmp/nginx.conf).
set -eu

NGINX_PORT=${NGINX_PORT:-8080}
API_BASE_URL=${API_BASE_URL:-http://backend-service:8000}
NGINX_TEMPLATE=${NGINX_TEMPLATE:-/etc/ecom-frontend/nginx.conf.template}
NGINX_CONF=${NGINX_CONF:-/tmp/nginx.conf}

die() {
	echo "ecom-frontend entrypoint: $*" >&2
	exit 2
}

case $NGINX_PORT in
'' | *[!0-9]*) die "NGINX_PORT must be a port number, got '$NGINX_PORT'" ;;
esac
[ "$NGINX_PORT" -ge 1 ] && [ "$NGINX_PORT" -le 65535 ] || die "NGINX_PORT out of range: $NGINX_PORT"

# A trailing slash would make nginx replace /api/ by / in the proxied URI.
while [ "${API_BASE_URL%/}" != "$API_BASE_URL" ]; do
	API_BASE_URL=${API_BASE_URL%/}
done
case $API_BASE_URL in
http://?* | https://?*) ;;
*) die "API_BASE_URL must be http(s)://host[:port], got '$API_BASE_URL'" ;;
esac
case ${API_BASE_URL#*://} in
*/*) die "API_BASE_URL must not have a path (requests keep their /api/... path), got '$API_BASE_URL'" ;;
esac
case $API_BASE_URL in
*[!]A-Za-z0-9._:/[-]*) die "API_BASE_URL has characters that are not allowed: '$API_BASE_URL'" ;;
esac

[ -r "$NGINX_TEMPLATE" ] || die "cannot read the template $NGINX_TEMPLATE"
export NGINX_PORT API_BASE_URL
envsubst '${NGINX_PORT} ${API_BASE_URL}' <"$NGINX_TEMPLATE" >"$NGINX_CONF" ||
	die "cannot write $NGINX_CONF"

echo "ecom-frontend entrypoint: listening on $NGINX_PORT, /api/ -> $API_BASE_URL" >&2
exec nginx -c "$NGINX_CONF" -g 'daemon off;'
