//! `cargo catga`: see [`catga_lints::cli`]. Installed as `cargo-catga`, so cargo runs it for
//! `cargo catga …`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = catga_lints::cli::run(
        &args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
