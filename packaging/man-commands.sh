#!/usr/bin/env bash
# Writes a help2man include file (see help2man(1), "INCLUDE FILES") holding a COMMANDS section: the
# --help of every apt-p2p command, found by walking the "Commands:" lists of --help down from the
# program, so that a command added to the CLI reaches the man page without editing this script.
# help2man itself renders the program's own --help (synopsis, global options, exit codes).
#
# Usage: packaging/man-commands.sh BINARY > commands.h2m
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BINARY" >&2
  exit 2
fi
bin=$1

# The subcommands listed by `BINARY [PATH...] --help`, one name a line, without commander's `help`.
subcommands() {
  "$bin" "$@" --help | awk '
    /^Commands:$/ { listing = 1; next }
    listing && /^$/ { exit }
    # An entry starts two columns in; its wrapped description lines are indented further.
    listing && /^  [a-z]/ && $1 != "help" { print $1 }
  '
}

# Every command path, depth first: "get", "serve", "dht", "dht stats", ...
command_paths() {
  local name
  for name in $(subcommands "$@"); do
    echo "$* $name" | sed 's/^ //'
    # shellcheck disable=SC2068 # the path's words are separate arguments on purpose
    command_paths $@ "$name"
  done
}

# One command's --help as roff: its usage line as a subsection title, the description as text, each
# option or subcommand as a tagged paragraph. The lists every command repeats (global options, exit
# codes) are left to the program's part of the page.
to_roff() {
  awk '
    function esc(s) {
      gsub(/\\/, "\\e", s)
      gsub(/-/, "\\-", s)
      sub(/^[.'\'']/, "\\&&", s)
      return s
    }
    # "-p, --port <port>" -> bold options, italic placeholders; "stats [options]" -> bold name.
    function term(s,    n, i, words, out, w) {
      n = split(s, words, " ")
      out = ""
      for (i = 1; i <= n; i++) {
        w = words[i]
        if (w ~ /^-/ || (i == 1 && in_commands)) {
          comma = sub(/,$/, "", w)
          w = "\\fB" esc(w) "\\fR" (comma ? "," : "")
        } else {
          w = "\\fI" esc(w) "\\fR"
        }
        out = out (i > 1 ? " " : "") w
      }
      return out
    }
    NR == 1 && sub(/^Usage: /, "") {
      print ".SS \"" esc($0) "\""
      print ".PP"
      next
    }
    # A heading is printed with its first entry, so that a list of only --help leaves none behind.
    function flush() {
      if (heading != "") { print ".PP"; print "\\fI" esc(heading) "\\fR"; heading = "" }
    }
    /^[A-Z][A-Za-z ]*:$/ {
      skipping = ($0 == "Global Options:" || $0 == "Exit codes:")
      in_commands = ($0 == "Commands:")
      heading = skipping ? "" : $0
      next
    }
    skipping { next }
    /^$/ { item = 0; next }
    /^  [^ ]/ {
      line = substr($0, 3)
      gap = index(line, "  ")
      name = gap ? substr(line, 1, gap - 1) : line
      text = gap ? line : ""
      sub(/^[^ ]+( [^ ]+)*  +/, "", text)
      # The help entries are in every command: say it once, in the program part.
      if (name == "-h, --help" || name ~ /^help( |$)/) { item = -1; next }
      flush()
      print ".TP"
      print term(name)
      if (text != "") print esc(text)
      item = 1
      next
    }
    /^   +[^ ]/ {
      if (item == -1) next
      sub(/^ +/, "")
      print esc($0)
      next
    }
    { flush(); print esc($0) }
  '
}

echo "[COMMANDS]"
echo "Each command also takes the options above."
command_paths | while read -r path; do
  # shellcheck disable=SC2086 # the path's words are separate arguments on purpose
  "$bin" $path --help | to_roff
done
