#!/bin/sh
# Patroni callback (on_stop, on_role_change): wake the member that must act next, now.
#
# Why: Patroni 3.0's etcd v2 client watches the leader key only when loop_wait leaves a
# second or more to wait, so with loop_wait 1 a member notices a released or a new leader
# key on its next loop, up to a second later: once for the candidate of a switchover and
# once more for the replica that must follow it, and with strict synchronous mode writes
# wait for that replica. A PATCH /config that changes nothing runs a member's loop at once.
#
# Whom:
# - on_stop of the leader (a switchover's demotion): the synchronous standby only, the one
#   member allowed to take over. A replica that runs its loop while the leader key is
#   released sleeps 2 s in Patroni 3.0 before following anyone, so the others are left
#   alone and the gap stays short.
# - on_role_change to primary (promoted): every other member, so they follow at once.
#
# Arguments: the other members' REST API URLs (rendered by `shopctl up local`), then what
# Patroni appends: action, role, scope. curl starts in milliseconds; python would not.
set -u

urls=""
action="" role="" last=""
for arg in "$@"; do
  case $arg in
    http://* | https://*) urls="$urls $arg" ;;
  esac
  action=$role role=$last last=$arg
done

wake() {
  curl -s -o /dev/null -m 0.5 -X PATCH -H 'Content-Type: application/json' \
    -d '{"postgresql": {}}' "$1/config" || true
}

# Wake now and twice more: on_stop can run a moment before the leader key is released.
# One line in the member's log (Patroni passes its own stderr on) says whom and when.
wake_soon() {
  echo "$(date '+%F %T.%3N') patroni_wake: $action as $role, waking $*" >&2
  for pause in 0 0.1 0.3; do
    sleep "$pause"
    for url in "$@"; do wake "$url" & done
    wait
  done
}

echo "$(date '+%F %T.%3N') patroni_wake: $action as $role" >&2
case "$action:$role" in
  on_stop:master | on_stop:primary | on_stop:demoted)
    for url in $urls; do
      if curl -s -m 0.3 "$url/patroni" | grep -q '"sync_standby": true'; then
        wake_soon "$url"
      fi
    done
    ;;
  on_role_change:master | on_role_change:primary)
    # shellcheck disable=SC2086 # one word per URL
    wake_soon $urls
    ;;
esac
