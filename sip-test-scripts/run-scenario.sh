#!/usr/bin/env bash
# Plays one sipp scenario through the test PBX (Kamailio) with Fiche listening
# for the HEP mirror, then stops every process it started, by PID.
#
#   sip-test-scripts/run-scenario.sh [--no-fiche] [--keep] SCENARIO
#   sip-test-scripts/run-scenario.sh --list
#
# SCENARIO is a folder of sip-test-scripts/scenarios/: caller.xml is played
# against Kamailio, each phone-NNN.xml runs as the sipp phone of extension NNN,
# trunk.xml as the trunk. Ports come from the environment (defaults in brackets):
#   PBX_PORT [5060]  HEP_PORT [9060]  HTTP_PORT [8080]  CALLER_PORT [5080]
#   PHONE_201_PORT [5071]  PHONE_202_PORT [5072]  PHONE_203_PORT [5073]  TRUNK_PORT [5090]
#   SCENARIO_TIMEOUT [20] seconds: hard bound of every sipp and of the whole run.
# Fiche is the binary in $FICHE_BIN, else target/debug/fiche (build it with
# `cargo build -p fiche-server`). With --no-fiche nothing listens for HEP unless
# you start something on HEP_PORT yourself. --keep keeps the work folder (logs,
# sipp message traces); it is printed at the end either way.
set -u -o pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"

start_fiche=1
keep=0
scenario=""
while [ $# -gt 0 ]; do
	case "$1" in
	--no-fiche) start_fiche=0 ;;
	--keep) keep=1 ;;
	--list)
		ls "$here/scenarios"
		exit 0
		;;
	-h | --help)
		sed -n '2,20p' "$0"
		exit 0
		;;
	-*)
		echo "unknown option $1" >&2
		exit 2
		;;
	*) scenario="$1" ;;
	esac
	shift
done
if [ -z "$scenario" ] || [ ! -f "$here/scenarios/$scenario/caller.xml" ]; then
	echo "usage: $0 [--no-fiche] [--keep] SCENARIO   (scenarios: $(ls "$here/scenarios" | tr '\n' ' '))" >&2
	exit 2
fi

PBX_PORT="${PBX_PORT:-5060}"
HEP_PORT="${HEP_PORT:-9060}"
HTTP_PORT="${HTTP_PORT:-8080}"
CALLER_PORT="${CALLER_PORT:-5080}"
PHONE_201_PORT="${PHONE_201_PORT:-5071}"
PHONE_202_PORT="${PHONE_202_PORT:-5072}"
PHONE_203_PORT="${PHONE_203_PORT:-5073}"
TRUNK_PORT="${TRUNK_PORT:-5090}"
T="${SCENARIO_TIMEOUT:-20}"

work="$(mktemp -d "${TMPDIR:-/tmp}/fiche-scenario.XXXXXX")"
pids=()

stop_all() {
	# Reverse start order: phones and caller, Kamailio, then Fiche.
	local i pid
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid="${pids[$i]}"
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	pids=()
	if [ "$keep" = 0 ] && [ "${failed:-0}" = 0 ]; then
		rm -rf "$work"
	else
		echo "logs and SIP traces kept in $work" >&2
	fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# Waits (bounded) until something listens on 127.0.0.1:$1/udp.
wait_udp() {
	local hex
	hex="$(printf '0100007F:%04X' "$1")"
	for _ in $(seq 1 100); do
		grep -q " $hex 00000000:0000 07 " /proc/net/udp && return 0
		sleep 0.05
	done
	echo "nothing listens on udp 127.0.0.1:$1 after 5 s" >&2
	return 1
}

failed=0

if [ "$start_fiche" = 1 ]; then
	fiche="${FICHE_BIN:-$repo/target/debug/fiche}"
	if [ ! -x "$fiche" ]; then
		echo "no Fiche binary at $fiche: run 'cargo build -p fiche-server' or set FICHE_BIN (or use --no-fiche)" >&2
		exit 2
	fi
	FICHE_HTTP_ADDR="127.0.0.1:$HTTP_PORT" FICHE_HEP_ADDR="127.0.0.1:$HEP_PORT" \
		FICHE_DATABASE_URL="sqlite://$work/fiche.db" FICHE_AGENT_EXTENSIONS='2\d\d' \
		timeout -k 2 "$((T + 10))" "$fiche" serve >"$work/fiche.log" 2>&1 &
	pids+=($!)
	ready=0
	for _ in $(seq 1 100); do
		if curl -fsS -m 1 "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1; then
			ready=1
			break
		fi
		sleep 0.1
	done
	if [ "$ready" = 0 ]; then
		failed=1
		echo "Fiche did not answer /healthz within 10 s; see $work/fiche.log" >&2
		exit 1
	fi
fi

timeout -k 2 "$((T + 10))" kamailio -f "$here/kamailio.cfg" -DD -E -Y "$work" -w "$work" \
	-A "PBX_PORT=$PBX_PORT" -A "HEP_URI=\"sip:127.0.0.1:$HEP_PORT\"" \
	-A "PHONE_201_PORT=$PHONE_201_PORT" -A "PHONE_202_PORT=$PHONE_202_PORT" \
	-A "PHONE_203_PORT=$PHONE_203_PORT" -A "TRUNK_PORT=$TRUNK_PORT" >"$work/kamailio.log" 2>&1 &
pids+=($!)
wait_udp "$PBX_PORT" || {
	failed=1
	exit 1
}

sipp_common=(-i 127.0.0.1 -m 1 -nostdin -timeout "${T}s" -timeout_error -trace_msg -trace_err)
phone_pids=()
for f in "$here/scenarios/$scenario"/phone-*.xml "$here/scenarios/$scenario"/trunk.xml; do
	[ -f "$f" ] || continue
	name="$(basename "$f" .xml)"
	case "$name" in
	phone-201) port="$PHONE_201_PORT" ;;
	phone-202) port="$PHONE_202_PORT" ;;
	phone-203) port="$PHONE_203_PORT" ;;
	trunk) port="$TRUNK_PORT" ;;
	*)
		echo "no port for $name" >&2
		exit 2
		;;
	esac
	timeout -k 2 "$T" sipp -sf "$f" -p "$port" "${sipp_common[@]}" \
		-message_file "$work/$name.messages.log" -error_file "$work/$name.errors.log" \
		>"$work/$name.out" 2>&1 &
	pids+=($!)
	phone_pids+=("$!:$name")
	wait_udp "$port" || {
		failed=1
		exit 1
	}
done

timeout -k 2 "$T" sipp -sf "$here/scenarios/$scenario/caller.xml" -p "$CALLER_PORT" "${sipp_common[@]}" \
	-cid_str "$scenario-$$-%u@fiche.test" \
	-message_file "$work/caller.messages.log" -error_file "$work/caller.errors.log" \
	"127.0.0.1:$PBX_PORT" >"$work/caller.out" 2>&1 &
caller_pid=$!
pids+=($caller_pid)
if wait "$caller_pid"; then
	echo "caller: ok (Call-ID $scenario-$$-1@fiche.test)"
else
	echo "caller: FAILED (sipp exit $?), see $work/caller.*" >&2
	failed=1
fi
for entry in "${phone_pids[@]}"; do
	pid="${entry%%:*}"
	name="${entry#*:}"
	if wait "$pid"; then
		echo "$name: ok"
	else
		echo "$name: FAILED (sipp exit $?), see $work/$name.*" >&2
		failed=1
	fi
done

if [ "$start_fiche" = 1 ]; then
	echo "--- GET /api/calls/live"
	curl -fsS -m 2 "http://127.0.0.1:$HTTP_PORT/api/calls/live" | (jq . 2>/dev/null || cat)
	echo
fi
exit "$failed"
