#include "command.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "run.hpp"

namespace herald::cli {

harness_command add_harness_command(CLI::App& app, std::string argv0) {
  struct state {
    harness::run_options run;
    std::optional<uint64_t> seed;
    std::optional<double> duration;
    std::string mode;
    std::string check_dir;
    std::vector<std::string> clean_dirs;
    bool clean_all = false;
    CLI::App* run_cmd = nullptr;
    CLI::App* check_cmd = nullptr;
    CLI::App* clean_cmd = nullptr;
  };
  auto st = std::make_shared<state>();
  st->run.self = std::move(argv0);
  auto* cmd = app.add_subcommand(
    "harness",
    "Launch a topology of nodes, drive a workload, inject faults on a "
    "seeded schedule (kill, pause, slow handlers; with --mode netns also "
    "partitions; disk full, clock jumps; join/leave cycles; a data "
    "directory wiped, test hooks changed, commands such as herald dlq "
    "redrive run at set times), and judge what every consumer handled "
    "(lost, duplicated, reordered, dead-lettered, redriven), "
    "what every node's view of the cluster was (membership expectations) "
    "and whether descriptors leaked. See docs/harness.md.");
  cmd->require_subcommand(1);
  st->run_cmd = cmd->add_subcommand(
    "run", "Run a scenario; exit 0 only if every check held. Prints the "
           "schedule, progress, each fault as applied, then the result "
           "(also in OUT/result.json).");
  st->run_cmd
    ->add_option("SCENARIO", st->run.scenario, "the scenario file (YAML)")
    ->required()
    ->check(CLI::ExistingFile);
  st->run_cmd->add_option("--seed", st->seed,
                          "the seed of the schedule and the workload; the "
                          "same seed gives the same ones. Default: random, "
                          "printed");
  st->run_cmd->add_option("--out", st->run.out,
                          "where the run's files go. Default: "
                          "harness-runs/NAME-seedN");
  st->run_cmd
    ->add_option("--duration", st->duration,
                 "the workload's length in seconds, instead of the "
                 "scenario's")
    ->check(CLI::PositiveNumber);
  st->run_cmd
    ->add_option("--mode", st->mode,
                 "loopback: every node on 127.0.0.1 (or its host address); "
                 "netns (root): one network namespace per host on a bridge "
                 "made for the run, needed by partition faults. Default: "
                 "the scenario's mode, else loopback")
    ->check(CLI::IsMember({"loopback", "netns"}));
  st->run_cmd->add_option("--path", st->run.path,
                          "a folder to look node commands up in (before the "
                          "herald executable's, its ../examples, ../tests "
                          "and PATH); repeatable");
  st->check_cmd = cmd->add_subcommand(
    "check", "Judge a finished run's folder again; exit 0 only if every "
             "check held.");
  st->check_cmd
    ->add_option("DIR", st->check_dir, "the run's folder (its --out)")
    ->required()
    ->check(CLI::ExistingDirectory);
  st->clean_cmd = cmd->add_subcommand(
    "clean", "Kill the node processes left by killed runs, remove the "
             "network namespaces, bridges, veths and tmpfs mounts they made "
             "(also those recorded in /run/herald-harness whose harness is "
             "gone), and remove their data directories.");
  st->clean_cmd->add_option("DIR", st->clean_dirs,
                            "a run's folder, or a folder of runs. Default: "
                            "harness-runs");
  st->clean_cmd->add_flag("--all", st->clean_all,
                          "remove the runs' folders entirely (histories and "
                          "results too)");
  return {cmd, [st] {
            if (*st->run_cmd) {
              st->run.seed = st->seed;
              st->run.duration = st->duration;
              if (!st->mode.empty())
                st->run.mode = harness::parse_mode(st->mode);
              return harness::run(st->run);
            }
            if (*st->check_cmd)
              return harness::check(st->check_dir);
            return harness::clean(st->clean_dirs, st->clean_all);
          }};
}

} // namespace herald::cli
