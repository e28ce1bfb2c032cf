# Fast path, decided in sh without starting a process: dbguard keeps the file
# <git dir>/dbguard-watch (src/hooks/watch.rs), listing the catalog, every database
# it compares and the git config; its mtime is older than dbguard's last look at
# them. Only a listed file that is missing, or is (or has a WAL) newer than that,
# starts dbguard; a line "?<path>" (the catalog of a store not made yet) only once
# that path exists.
dbguard_gd=${GIT_DIR-}
if [ -z "$dbguard_gd" ]; then
  if [ -d .git ]; then
    dbguard_gd=.git
  elif [ -f .git ] && IFS= read -r dbguard_gd <.git; then
    dbguard_gd=${dbguard_gd#gitdir: }
  fi
fi
dbguard_run=1
dbguard_w=$dbguard_gd/dbguard-watch
if [ -n "$dbguard_gd" ] && [ -f "$dbguard_w" ]; then
  {
    IFS= read -r dbguard_p && [ "$dbguard_p" = "dbguard-watch 2" ] && dbguard_run=
    while [ -z "$dbguard_run" ] && IFS= read -r dbguard_p; do
      case $dbguard_p in
        "?"*)
          if [ -e "${dbguard_p#?}" ]; then
            dbguard_run=1
          fi
          ;;
        *)
          if [ ! -e "$dbguard_p" ] || [ "$dbguard_p" -nt "$dbguard_w" ] ||
            [ "$dbguard_p-wal" -nt "$dbguard_w" ] || [ "$dbguard_p.wal" -nt "$dbguard_w" ]; then
            dbguard_run=1
          fi
          ;;
      esac
    done
  } <"$dbguard_w"
fi
