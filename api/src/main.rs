//! `loyalty`: see `api::cli` for the commands.

fn main() -> std::process::ExitCode {
    api::cli::main()
}
