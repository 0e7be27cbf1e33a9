#!/bin/sh
# Writes Alertmanager's configuration from the environment, then runs it:
#   AIART_ALERT_WEBHOOK_URL  where every alert is posted (Alertmanager's
#                            webhook format); empty: alerts are only shown
#                            by aiart (aiart.status.alerts, aiart status).
#   AIART_ALERT_CONFIG       a whole Alertmanager configuration file to use
#                            instead (a site's own receivers and routes).
set -eu
config=/etc/alertmanager/alertmanager.yml
if [ -n "${AIART_ALERT_CONFIG:-}" ]; then
  config=$AIART_ALERT_CONFIG
else
  url=${AIART_ALERT_WEBHOOK_URL:-}
  case "$url" in
    "") ;;
    *'"'*|*'\'*|*' '*) echo "AIART_ALERT_WEBHOOK_URL must not hold quotes, backslashes or spaces" >&2; exit 2 ;;
    http://*|https://*) ;;
    *) echo "AIART_ALERT_WEBHOOK_URL must be an http:// or https:// URL, not '$url'" >&2; exit 2 ;;
  esac
  mkdir -p /etc/alertmanager
  {
    echo 'route:'
    echo '  receiver: site'
    echo '  group_by: [alertname, model, version]'
    echo '  group_wait: 5s'
    echo '  group_interval: 30s'
    echo '  repeat_interval: 4h'
    echo 'receivers:'
    echo '  - name: site'
    if [ -n "$url" ]; then
      echo '    webhook_configs:'
      echo "      - url: \"$url\""
      echo '        send_resolved: true'
    fi
  } > "$config"
fi
# One replica: no cluster gossip.
exec /usr/bin/prometheus-alertmanager --config.file="$config" --storage.path=/alertmanager \
  --cluster.listen-address= "$@"
