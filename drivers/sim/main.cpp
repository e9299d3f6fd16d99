// semilab-sim: serve one simulated instrument on TCP.
//   semilab-sim --model keithley2450|keithley2400|e4980a|34461a --listen 127.0.0.1:0 [--seed N]
//               [--fault SPEC ...]   (fault grammar: --help, semilab::sim::kFaultGrammar)
//               [--vxi11]            serve VXI-11 instead of a raw socket: --listen is then the
//                                    simulator's own portmapper (GETPORT gives the core channel)
// First stdout line: "listening HOST:PORT" (flushed; with --vxi11 the portmapper's port). Logs go to stderr. SIGINT/SIGTERM stop it.
// Exit codes: 0 clean stop, 2 usage error, 3 cannot listen.
#include <semilab/sim/instrument.hpp>
#include <semilab/sim/modbus_sim.hpp>
#include <semilab/sim/server.hpp>
#include <semilab/sim/vxi11_server.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  namespace asio = boost::asio;
  spdlog::set_default_logger(spdlog::stderr_color_mt("sim"));

  CLI::App app{"semilab-sim: simulated instruments over TCP (SCPI)"};
  std::string model = "keithley2450";
  std::string listen = "127.0.0.1:5025";
  std::uint64_t seed = 1;
  std::vector<std::string> fault_specs;
  bool list = false;
  bool verbose = false;
  app.add_option("--model", model, "Simulated model (see --list-models)");
  app.add_option("--listen", listen, "Listen address HOST:PORT, port 0 = any free port");
  app.add_option("--seed", seed, "Seed of the measurement noise");
  app.add_option("--fault", fault_specs,
                 "Fault to inject (repeatable):\n" + std::string(semilab::sim::kFaultGrammar));
  app.add_flag("--list-models", list, "Print the simulated models and exit");
  bool rtu = false;
  app.add_flag("--rtu", rtu, "Modbus models: serve RTU on a new pty (prints its path) instead of TCP");
  bool vxi11 = false;
  app.add_flag("--vxi11", vxi11,
               "SCPI models: serve VXI-11 (ONC RPC core channel) instead of a raw socket. --listen\n"
               "is then the simulator's own portmapper (TCP; GETPORT for program 0x0607AF v1 gives\n"
               "the core channel, on a free port of the same address); the first stdout line\n"
               "'listening HOST:PORT' names the portmapper port (agent: --portmapper-port PORT,\n"
               "resource TCPIP0::HOST::inst0::INSTR; any device name is accepted)");
  app.add_flag("-v,--verbose", verbose, "Debug logging");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  if (verbose) spdlog::set_level(spdlog::level::debug);

  if (list) {
    for (const auto& m : semilab::sim::sim_models()) std::cout << m.name << '\t' << m.description << '\n';
    return 0;
  }
  // Modbus models (eurotherm3200, vacuum-gauge, mfc) are served by libmodbus: modbus_sim.hpp.
  if (vxi11 && semilab::sim::is_modbus_model(model)) {
    spdlog::error("--vxi11 serves SCPI models only; '{}' is a Modbus model", model);
    return 2;
  }
  if (semilab::sim::is_modbus_model(model))
    return semilab::sim::run_modbus_sim({model, listen, seed, fault_specs, rtu});
  semilab::sim::fault_config faults;
  for (const auto& spec : fault_specs) {
    if (auto err = semilab::sim::apply_fault_spec(spec, faults); !err.empty()) {
      spdlog::error("{}", err);
      return 2;
    }
  }
  auto instrument = semilab::sim::make_sim_instrument(model, seed);
  if (!instrument) {
    spdlog::error("unknown model '{}' (see --list-models)", model);
    return 2;
  }
  asio::ip::tcp::endpoint endpoint;
  if (!semilab::sim::parse_listen(listen, endpoint)) {
    spdlog::error("--listen '{}': expected HOST:PORT with a numeric address", listen);
    return 2;
  }

  asio::io_context io;
  std::unique_ptr<semilab::sim::sim_server> server;
  std::unique_ptr<semilab::sim::vxi11_server> vxi_server;
  try {
    if (vxi11)
      vxi_server = std::make_unique<semilab::sim::vxi11_server>(io, std::move(instrument), endpoint,
                                                                faults);
    else
      server = std::make_unique<semilab::sim::sim_server>(io, std::move(instrument), endpoint, faults);
  } catch (const boost::system::system_error& e) {
    spdlog::error("cannot listen on {}: {}", listen, e.code().message());
    return 3;
  }
  auto bound = vxi11 ? vxi_server->portmapper_endpoint() : server->local_endpoint();
  std::string host = bound.address().to_string();
  if (bound.address().is_v6()) host = "[" + host + "]";
  std::cout << "listening " << host << ':' << bound.port() << std::endl;  // flushed: tests wait on it

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: stopping", sig);
    if (vxi_server) vxi_server->stop();
    if (server) server->stop();
  });
  if (vxi_server) {
    vxi_server->start();
    spdlog::info("model {} seed {} over VXI-11: portmapper {}:{}, core channel port {}", model, seed,
                 host, bound.port(), vxi_server->core_endpoint().port());
  } else {
    server->start();
    spdlog::info("model {} seed {} on {}:{}", model, seed, host, bound.port());
  }
  io.run();
  return 0;
}
