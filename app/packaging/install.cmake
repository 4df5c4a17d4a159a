# What `cmake --install` installs and `cpack -G DEB` packs (included from the
# top-level CMakeLists.txt): the four tools, their man pages (made with
# help2man at build time when it is installed) and the systemd units.
# Components: bin, man, service.
include(GNUInstallDirs)
# Build first (cmake --build build), then install or pack: `make install`
# and cpack do not build the whole tree (tests included) themselves, so the
# install test packs a built tree in seconds without relinking binaries that
# other tests are running.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

install(TARGETS smsp-actors smsp-client smsp-admin smsp-bench
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT bin)

# The commented example of --config (docs/OPERATIONS.md, "Configuration
# file").
install(FILES ${PROJECT_SOURCE_DIR}/docs/smsp-actors.conf.example
  DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/smsp-actors COMPONENT bin)
# The fail2ban filter for failed LOGINs (docs/OPERATIONS.md, "The log").
install(FILES ${PROJECT_SOURCE_DIR}/app/packaging/fail2ban/smsp-actors.conf
  DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/smsp-actors
  RENAME fail2ban-filter-smsp-actors.conf COMPONENT bin)

# Man pages from each tool's --help (help2man). --version-string: one
# version for all pages (`smsp-actors node` has no --version of its own).
# Not in the sanitizer build (tests/sanitize.sh), which nobody installs.
find_program(HELP2MAN_EXECUTABLE help2man)
if(HELP2MAN_EXECUTABLE AND NOT SMSP_SANITIZE)
  set(SMSP_MAN_DIR ${CMAKE_BINARY_DIR}/man)
  file(MAKE_DIRECTORY ${SMSP_MAN_DIR})
  set(SMSP_MAN_PAGES)
  # page name, target, help option, NAME line
  foreach(page IN ITEMS
      "smsp-actors|smsp-actors|--help|SMSP mail server on the C++ Actor Framework"
      "smsp-actors-node|smsp-actors|node --help|mailbox node of an smsp-actors front"
      "smsp-client|smsp-client|--help|interactive and scripted SMSP client"
      "smsp-admin|smsp-admin|--help|administer a running or stopped smsp-actors server"
      "smsp-bench|smsp-bench|--help|load generator for an SMSP server")
    string(REPLACE "|" ";" fields "${page}")
    list(GET fields 0 name)
    list(GET fields 1 target)
    list(GET fields 2 help_option)
    list(GET fields 3 what)
    add_custom_command(
      OUTPUT ${SMSP_MAN_DIR}/${name}.1.gz
      COMMAND ${HELP2MAN_EXECUTABLE} --no-info --no-discard-stderr
              --version-string=${PROJECT_VERSION}
              "--help-option=${help_option}" "--name=${what}"
              --output=${SMSP_MAN_DIR}/${name}.1 $<TARGET_FILE:${target}>
      # Compressed, as Debian keeps man pages (-n: no time stamp).
      COMMAND gzip -9nf ${SMSP_MAN_DIR}/${name}.1
      DEPENDS ${target}
      WORKING_DIRECTORY ${SMSP_MAN_DIR}
      COMMENT "Generating man page ${name}.1"
      VERBATIM)
    list(APPEND SMSP_MAN_PAGES ${SMSP_MAN_DIR}/${name}.1.gz)
  endforeach()
  add_custom_target(smsp-man ALL DEPENDS ${SMSP_MAN_PAGES})
  install(FILES ${SMSP_MAN_PAGES}
    DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT man)
elseif(NOT SMSP_SANITIZE)
  message(STATUS "help2man not found: no man pages (apt-get install help2man)")
endif()

# The systemd units. Their ExecStart names the installed binary, so they are
# written at install time, when the prefix is known (cmake --install --prefix
# and cpack set it then). Debian bookworm keeps units in /lib/systemd/system.
set(SMSP_SYSTEMD_UNIT_DIR "/lib/systemd/system" CACHE PATH
    "Where cmake --install puts the systemd units (absolute, not under the prefix)")
foreach(unit IN ITEMS smsp-actors.service smsp-actors-node@.service)
  install(CODE "
    set(bindir \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
    if(IS_ABSOLUTE \"${CMAKE_INSTALL_BINDIR}\")
      set(bindir \"${CMAKE_INSTALL_BINDIR}\")
    endif()
    file(READ \"${PROJECT_SOURCE_DIR}/app/packaging/systemd/${unit}.in\" text)
    string(REPLACE \"@SMSP_INSTALL_BINDIR@\" \"\${bindir}\" text \"\${text}\")
    # One copy per destination, so that two installs never share one.
    string(MD5 where \"\$ENV{DESTDIR}|\${bindir}\")
    set(unit_file \"${CMAKE_BINARY_DIR}/packaging/\${where}/${unit}\")
    file(WRITE \"\${unit_file}\" \"\${text}\")
    file(INSTALL DESTINATION \"${SMSP_SYSTEMD_UNIT_DIR}\" TYPE FILE
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
         FILES \"\${unit_file}\")
    " COMPONENT service)
endforeach()

# cpack -G DEB: one package, smsp-actors, with every component.
set(CPACK_PACKAGE_NAME smsp-actors)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "SMSP mail server on the C++ Actor Framework")
set(CPACK_PACKAGE_DESCRIPTION
    "smsp-actors serves the Simple Mail Server Protocol (SMSP) over TCP.
Accounts, the incoming message queue and mailboxes are kept in SQLite and
every acknowledged write is durable; passwords are Argon2id hashes.
Mailboxes may live on mailbox nodes (smsp-actors node). The package holds
the server, the smsp-client, smsp-admin and smsp-bench tools, their man
pages, an example config, a fail2ban filter and the systemd units
smsp-actors.service and smsp-actors-node@.service.")
set(SMSP_PACKAGE_MAINTAINER
    "smsp-actors maintainers <maintainers@users.noreply.r-seed-996a365d.example>"
    CACHE STRING "Maintainer field of the .deb")
set(CPACK_PACKAGE_CONTACT "${SMSP_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${SMSP_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends from the binaries' libraries (dpkg-shlibdeps, in dpkg-dev); without
# it, the runtime packages of Debian bookworm by name.
find_program(DPKG_SHLIBDEPS_EXECUTABLE dpkg-shlibdeps)
if(DPKG_SHLIBDEPS_EXECUTABLE)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
      "libcaf-core0.17, libcaf-io0.17, libcaf-openssl0.17, libsqlite3-0, libsodium23, libedit2, libssl3, libsystemd0, libstdc++6, libc6")
endif()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/app/packaging/debian/postinst
    ${PROJECT_SOURCE_DIR}/app/packaging/debian/prerm
    ${PROJECT_SOURCE_DIR}/app/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Debug info stays in the build tree.
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
include(CPack)
