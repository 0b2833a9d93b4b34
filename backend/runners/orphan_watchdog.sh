#!/usr/bin/env bash
# The dead-man switch of a job on an ssh or ec2 runner, started beside it.
#
# While a trainboard session holds the run, it touches ALIVE every few seconds.
# When ALIVE has not changed for LIMIT seconds (trainboard was killed, or the
# network to the host went away for good) and the run was not left on purpose
# (DETACHED exists after a detach), the job's process group gets SIGTERM, then
# SIGKILL, and the reason goes to NOTE. The watchdog ends with the job: when
# the job's wrapper has written its EXIT file, or its process group is gone.
#
# Changes of ALIVE are timed with this host's clock only, so a clock that
# differs from trainboard's does not matter.
#
# usage: orphan_watchdog.sh PGID ALIVE DETACHED LIMIT NOTE EXIT
set -u

pgid=$1
alive=$2
detached=$3
limit=$4
note=$5
exit_file=$6

mtime() {
  stat -c %Y -- "$1" 2>/dev/null || stat -f %m -- "$1" 2>/dev/null || echo missing
}

last=$(mtime "$alive")
changed=$(date +%s)
while [ ! -e "$exit_file" ] && kill -0 -- "-$pgid" 2>/dev/null; do
  sleep 1
  now=$(date +%s)
  seen=$(mtime "$alive")
  if [ "$seen" != "$last" ] || [ -e "$detached" ]; then
    last=$seen
    changed=$now
    continue
  fi
  if [ $((now - changed)) -ge "$limit" ]; then
    printf 'no word from trainboard for %s s: the job was stopped at %s\n' "$limit" "$now" >"$note"
    kill -TERM -- "-$pgid" 2>/dev/null
    for _ in 1 2 3 4 5; do
      kill -0 -- "-$pgid" 2>/dev/null || exit 0
      sleep 1
    done
    kill -KILL -- "-$pgid" 2>/dev/null
    exit 0
  fi
done
