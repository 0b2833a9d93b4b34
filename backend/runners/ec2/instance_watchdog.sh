#!/bin/bash
# trainboard watchdog: shuts the instance down (= terminates it) after max_duration_minutes,
# or idle_timeout_minutes after the job ended; turns a spot interruption notice into
# <run folder>/interruption and SIGTERM to the job's process group.
set -u
RUN_DIR=${TRAINBOARD_RUN_DIR:-@RUN_DIR@}
RUN_USER=@RUN_USER@
MAX_SECONDS=@MAX_SECONDS@
IDLE_SECONDS=@IDLE_SECONDS@
IMDS=${TRAINBOARD_IMDS_URL:-http://169.254.169.254}
SHUTDOWN_CMD=${TRAINBOARD_SHUTDOWN_CMD:-'shutdown -h now'}
POLL=${TRAINBOARD_WATCHDOG_POLL:-5}
STATE_DIR=${TRAINBOARD_WATCHDOG_STATE:-/var/lib/trainboard}
say() { echo "trainboard-watchdog: $*"; }
halt() {
  say "$1: shutting down"
  bash -c "$SHUTDOWN_CMD"
  exit 0
}
as_user() {  # files in the run folder belong to the login user
  if [ "$(id -u)" -eq 0 ] && [ "$RUN_USER" != root ] && command -v runuser >/dev/null 2>&1; then
    runuser -u "$RUN_USER" -- "$@"
  else
    "$@"
  fi
}
imds() {  # IMDSv2: a session token first, then the path; prints nothing unless 200
  local token
  token=$(curl -sf -m 2 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$IMDS/latest/api/token") || return 1
  curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/meta-data/$1"
}
interrupt() {
  as_user mkdir -p "$RUN_DIR"
  printf 'spot interruption notice: %s\n' "$1" | as_user tee "$RUN_DIR/interruption.tmp" >/dev/null
  as_user mv -f "$RUN_DIR/interruption.tmp" "$RUN_DIR/interruption"
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -e "$pidfile" ] || continue
    [ -e "${pidfile%.pid}.exit" ] && continue
    pid=$(cat "$pidfile" 2>/dev/null)
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    say "SIGTERM to job process group $pid"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  done
}
mkdir -p "$STATE_DIR"
# The deadline is fixed once, at first boot: a restarted watchdog keeps it.
[ -s "$STATE_DIR/deadline" ] || echo $(( $(date +%s) + MAX_SECONDS )) > "$STATE_DIR/deadline"
DEADLINE=$(cat "$STATE_DIR/deadline")
say "run folder $RUN_DIR, shutdown at $(date -u -d "@$DEADLINE" +%FT%TZ 2>/dev/null || echo "$DEADLINE")"
noticed=""
while :; do
  now=$(date +%s)
  [ "$now" -ge "$DEADLINE" ] && halt "max_duration_minutes reached"
  if [ -e "$RUN_DIR/job.exit" ]; then
    ended=$(stat -c %Y "$RUN_DIR/job.exit" 2>/dev/null || echo "$now")
    [ $(( now - ended )) -ge "$IDLE_SECONDS" ] && halt "idle for idle_timeout_minutes after the job ended"
  fi
  if [ -z "$noticed" ]; then
    action=$(imds spot/instance-action 2>/dev/null) || action=""
    if [ -n "$action" ]; then
      noticed=1
      say "spot interruption notice: $action"
      interrupt "$action"
    fi
  fi
  sleep "$POLL"
done
