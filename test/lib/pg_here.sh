# Sourced by test/run_all and demo/run: is PostgreSQL N packaged on this
# machine, and if not, run the caller again inside a Debian root that
# packages it (test/pg_root).
#
# Under "set -o pipefail", "cmd | grep -q" can fail on a match: grep exits
# at once and cmd dies of SIGPIPE.  Hence "grep ... >/dev/null".
#
# test/pg_root sets INVOICE_SEQ_IN_ROOT in the root.  A command that finds
# its version missing there fails, and never starts another root inside
# the root.

# pg_packaged_here N: PostgreSQL N is installed, or this machine's apt
# offers it (after an update, for a machine whose package lists are empty).
pg_packaged_here() {
	[ -x "/usr/lib/postgresql/$1/bin/pg_config" ] && return 0
	apt-cache policy "postgresql-$1" 2>/dev/null | grep -E 'Candidate: [0-9]' >/dev/null && return 0
	apt-get update -qq >/dev/null 2>&1 || true
	apt-cache policy "postgresql-$1" 2>/dev/null | grep -E 'Candidate: [0-9]' >/dev/null
}

# run_in_pg_root N COMMAND [ARG...]: replace this process by COMMAND, run
# from the checkout's copy inside the Debian root for PostgreSQL N.
run_in_pg_root() {
	local pg=$1
	shift
	if [ -n "${INVOICE_SEQ_IN_ROOT:-}" ]; then
		echo "$(basename "$0"): PostgreSQL $pg is not installable in this Debian root ($INVOICE_SEQ_IN_ROOT):" >&2
		apt-get update 2>&1 | tail -5 >&2
		apt-cache policy "postgresql-$pg" >&2 || true
		return 1
	fi
	printf '\n=== PostgreSQL %s is not packaged here: running in a Debian root (test/pg_root)\n' "$pg"
	exec "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/pg_root" "$pg" "$@"
}
