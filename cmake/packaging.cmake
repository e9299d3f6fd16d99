# Installation layout and Debian packages (CPack DEB, one package per component):
#   semilab-agent    /usr/bin/semilab-agent, /etc/semilab/agent.toml (conffile), the systemd
#                    unit, the udev rule (USBTMC + serial for the `semilab` user), Modbus profiles
#   semilab-central  /usr/bin/semilab-central, /etc/semilab/central.toml (conffile), the systemd
#                    unit, the Prometheus alert rules
#   semilab-sim      /usr/bin/semilab-sim
# State lives in /var/lib/semilab (created by the maintainer scripts, owned by `semilab`).
# `./dev package` builds them into build/packages/; packaging/README.md says what each file is.
include(GNUInstallDirs)

set(_pkg ${PROJECT_SOURCE_DIR}/packaging)

# sd_notify, watchdog and journald for the daemons (linked by semilab_agent and semilab_central).
add_subdirectory(${_pkg}/service ${PROJECT_BINARY_DIR}/packaging/service)

# Every package: copyright, changelog (compressed as dpkg expects) and its lintian overrides
# (packaging/debian/lintian/PKG: each override says why).
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_pkg}/debian/changelog)
execute_process(COMMAND gzip -9nc ${_pkg}/debian/changelog
                OUTPUT_FILE ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz)
foreach(_c agent central sim)
  install(FILES ${_pkg}/debian/copyright ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz
          DESTINATION share/doc/semilab-${_c} COMPONENT ${_c})
  install(FILES ${_pkg}/debian/lintian/semilab-${_c} DESTINATION share/lintian/overrides
          COMPONENT ${_c})
endforeach()

if(TARGET semilab-agent)
  install(TARGETS semilab-agent RUNTIME DESTINATION bin COMPONENT agent)
  install(FILES ${PROJECT_SOURCE_DIR}/docs/OPERATIONS.md ${PROJECT_SOURCE_DIR}/docs/agent-config.md
                ${PROJECT_SOURCE_DIR}/docs/agent-status.md
          DESTINATION share/doc/semilab-agent COMPONENT agent)
  install(FILES ${_pkg}/etc/agent.toml DESTINATION /etc/semilab COMPONENT agent)
  install(FILES ${_pkg}/systemd/semilab-agent.service DESTINATION /lib/systemd/system COMPONENT agent)
  install(FILES ${_pkg}/udev/60-semilab.rules DESTINATION /lib/udev/rules.d COMPONENT agent)
  # Bash completion of the CLI (docs/agent-cli.md).
  install(FILES ${_pkg}/completion/semilab-agent
          DESTINATION share/bash-completion/completions COMPONENT agent)
  install(FILES ${PROJECT_SOURCE_DIR}/docs/agent-cli.md DESTINATION share/doc/semilab-agent
          COMPONENT agent)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/drivers/profiles/modbus/
          DESTINATION share/semilab/profiles/modbus COMPONENT agent FILES_MATCHING PATTERN "*.toml")
endif()
if(TARGET semilab-central)
  install(TARGETS semilab-central RUNTIME DESTINATION bin COMPONENT central)
  install(FILES ${PROJECT_SOURCE_DIR}/docs/OPERATIONS.md ${PROJECT_SOURCE_DIR}/docs/central-config.md
          DESTINATION share/doc/semilab-central COMPONENT central)
  install(FILES ${_pkg}/etc/central.toml DESTINATION /etc/semilab COMPONENT central)
  install(FILES ${_pkg}/systemd/semilab-central.service DESTINATION /lib/systemd/system
          COMPONENT central)
  install(FILES ${_pkg}/prometheus/semilab-alerts.yml DESTINATION share/semilab/prometheus
          COMPONENT central)
endif()
if(TARGET semilab-sim)
  install(TARGETS semilab-sim RUNTIME DESTINATION bin COMPONENT sim)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_NAME semilab)
set(CPACK_PACKAGE_VENDOR "semilab")
set(CPACK_PACKAGE_CONTACT "semilab maintainers <semilab-maintainers@example.org>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "semilab: laboratory instrument data collection")
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/packages)
set(CPACK_COMPONENTS_ALL agent central sim)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # semilab-agent_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
# Shared libraries through dpkg-shlibdeps (libpaho, libsqlite3, libzstd, libmodbus, libusb, libpq,
# libssl, libsystemd, libstdc++ ...), plus what the maintainer scripts use.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_STRIP_FILES ON)  # debug info stays in the build tree
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME semilab-agent)
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser")  # deb-systemd-helper: init-system-helpers is essential
set(CPACK_DEBIAN_AGENT_PACKAGE_RECOMMENDS "udev")
set(CPACK_DEBIAN_AGENT_PACKAGE_SUGGESTS "semilab-sim, mosquitto-clients")
# One string: several arguments to set() would make a ;-separated list in the control file.
string(CONCAT CPACK_COMPONENT_AGENT_DESCRIPTION
  "semilab agent: drives instruments and stores every measurement locally first\n"
  "Runs beside lab instruments (SCPI over TCP, VXI-11, USBTMC, serial, Modbus),\n"
  "writes every measurement to a local SQLite outbox, and uploads batches to\n"
  "semilab-central over MQTT.")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
  ${_pkg}/debian/agent/conffiles ${_pkg}/debian/agent/postinst
  ${_pkg}/debian/agent/prerm ${_pkg}/debian/agent/postrm)
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_CENTRAL_PACKAGE_NAME semilab-central)
set(CPACK_DEBIAN_CENTRAL_PACKAGE_DEPENDS "adduser")  # deb-systemd-helper: init-system-helpers is essential
set(CPACK_DEBIAN_CENTRAL_PACKAGE_RECOMMENDS "mosquitto")
set(CPACK_DEBIAN_CENTRAL_PACKAGE_SUGGESTS "postgresql, prometheus")
string(CONCAT CPACK_COMPONENT_CENTRAL_DESCRIPTION
  "semilab central: ingest service, store and HTTP API\n"
  "Subscribes to the agents' batches over MQTT, stores them durably (SQLite or\n"
  "PostgreSQL), acknowledges them, and serves measurements and Prometheus\n"
  "metrics over HTTP.")
set(CPACK_DEBIAN_CENTRAL_PACKAGE_CONTROL_EXTRA
  ${_pkg}/debian/central/conffiles ${_pkg}/debian/central/postinst
  ${_pkg}/debian/central/prerm ${_pkg}/debian/central/postrm)
set(CPACK_DEBIAN_CENTRAL_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_SIM_PACKAGE_NAME semilab-sim)
string(CONCAT CPACK_COMPONENT_SIM_DESCRIPTION
  "semilab simulator: simulated lab instruments for tests and demos\n"
  "Keithley 2450/2400 SMUs, Keysight E4980A and 34461A, Modbus controllers,\n"
  "with injectable faults.")

include(CPack)
