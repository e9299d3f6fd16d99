// semilab-sim: serve one simulated instrument on TCP.
//   semilab-sim --model keithley2450|keithley2400|e4980a|34461a --listen 127.0.0.1:0 [--seed N]
//               [--fault SPEC ...]   (fault grammar: --help, semilab::sim::kFaultGrammar)
//               [--vxi11]            serve VXI-11 instead of a raw socket: --listen is then the
//                                    simulator's own portmapper (GETPORT gives the core channel)
// First stdout line: "listening HOST:PORT" (flushed; with --vxi11 the portmapper's port). Logs go to stderr. SIGINT/SIGTERM stop it.
//   semilab-sim --station FILE   several instruments over shared device models (station.hpp);
//                                one stdout line "listening ID HOST:PORT" per instrument, then
//                                "ready"
//   semilab-sim --model export-folder DIR [--period SECONDS] [--count N] [--formats a,b]
//                                export files (XRDML, JCAMP-DX, VAMAS, SPC, CSV, SEM TIFF) written
//                                into DIR in pieces, one per period; "ready DIR", then
//                                "wrote PATH" per file (export_folder.hpp)
// Exit codes: 0 clean stop, 2 usage error, 3 cannot listen (export-folder: cannot write).
#include <semilab/sim/export_folder.hpp>
#include <semilab/sim/instrument.hpp>
#include <semilab/sim/station.hpp>
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
  std::string station_file;
  app.add_option("--station", station_file,
                 "Serve a station: instruments on shared device models (TOML; see station.hpp)");
  semilab::sim::export_folder_options export_opts;
  std::string export_dir;
  app.add_option("dir", export_dir, "--model export-folder: the folder export files appear in");
  app.add_option("--period", export_opts.period_s,
                 "--model export-folder: seconds between two files (default 5)");
  app.add_option("--count", export_opts.count, "--model export-folder: files to write, then exit (0 = until a signal)");
  app.add_option("--formats", export_opts.formats,
                 "--model export-folder: formats in turn (xrdml, jcamp-dx, vamas, spc, csv, sem-tiff; default all)")
      ->delimiter(',');
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
  // Export files of optical/structural/chemical instruments in a folder (export_folder.hpp).
  if (model == "export-folder") {
    if (export_dir.empty()) {
      spdlog::error("--model export-folder needs the folder: semilab-sim --model export-folder DIR [--period S]");
      return 2;
    }
    export_opts.dir = export_dir;
    export_opts.seed = seed;
    return semilab::sim::run_export_folder(export_opts);
  }

  if (list) {
    for (const auto& m : semilab::sim::sim_models()) std::cout << m.name << '\t' << m.description << '\n';
    return 0;
  }
  if (!station_file.empty()) {
    std::string err;
    auto cfg = semilab::sim::load_station(station_file, err);
    if (!cfg) {
      spdlog::error("{}", err);
      return 2;
    }
    asio::io_context io;
    std::unique_ptr<semilab::sim::station> st;
    try {
      st = std::make_unique<semilab::sim::station>(io, *cfg, err);
    } catch (const boost::system::system_error& e) {
      spdlog::error("station {}: cannot listen: {}", station_file, e.code().message());
      return 3;
    }
    if (!st->ok()) {
      spdlog::error("station {}: {}", station_file, err);
      return 2;
    }
    for (const auto& s : st->endpoints())
      std::cout << "listening " << s.id << ' ' << s.endpoint.address().to_string() << ':'
                << s.endpoint.port() << '\n';
    std::cout << "ready" << std::endl;  // flushed: tests wait on it
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int) {
      if (!ec) st->stop();
    });
    st->start();
    io.run();
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
