# Shared helpers of the CLI test scripts (sourced). The caller sets `tmp` (a scratch
# directory); commands' output goes to $so and $se.
pass=0
fail=0
so="$tmp/stdout.txt"
se="$tmp/stderr.txt"

# expect CODE NAME -- COMMAND...: the command exits with CODE.
expect() {
  local want=$1 name=$2
  shift 3
  "$@" >"$so" 2>"$se"
  local got=$?
  if [ "$got" = "$want" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL $name: exit $got, expected $want"; sed 's/^/  stderr: /' "$se" | tail -8
  fi
}

# expect_grep FILE PATTERN NAME: FILE contains PATTERN.
expect_grep() {
  if grep -q -- "$2" "$1"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $3: '$2' not in $1"; sed 's/^/  /' "$1" | tail -5; fi
}

# expect_true NAME COMMAND...: the command succeeds.
expect_true() {
  local name=$1
  shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $name"; fi
}

# json_check NAME FILE EXPR: a Python expression on `m` (the JSON in FILE) holds.
json_check() {
  if /usr/bin/python3 -c "import json,sys; m=json.load(open('$2')); sys.exit(0 if ($3) else 1)"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL $1: $3"; head -c 600 "$2"; echo
  fi
}

# finish SCRIPT-NAME: prints the tally; the exit status is 0 only when nothing failed.
finish() {
  echo "$1: $pass passed, $fail failed"
  [ "$fail" = 0 ]
}
