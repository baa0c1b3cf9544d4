//! `warden`: check, test, compile and pin mcp-warden policy bundles.

use mcp_warden_cli::{bundle, cases, check, pin};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
warden — mcp-warden policy tool (uses the filter's own code)

Usage:
  warden check [--allow-open] [--allow-example-secrets] <bundle.toml | plugin.json | envoy.yaml>...
  warden test <bundle-dir>...
  warden compile [--compact] <bundle.toml>
  warden pin --url http://HOST:PORT/PATH [--server NAME] [--header \"K: V\"]... [--approved-for GROUP]...
  warden <command> --help

Exit status: 0 when everything is valid / passes, 1 otherwise, 2 for usage errors.
";

const CHECK_HELP: &str = "\
warden check [--allow-open] [--allow-example-secrets] <file>...

Validates each file with the filter's configuration code and prints `file: ok (...)` or one
line per problem: `file:line:column: field `path`: message`.

  *.toml        a policy bundle (what goes under \"policy\" in the plugin configuration)
  *.json        a whole plugin configuration
  *.yaml, *.yml an Envoy configuration: every plugin configuration in it (the single-quoted
                `value: '...'` of each \"@type\": type.googleapis.com/google.protobuf.StringValue)

Warnings (`file:line:column: warning: field `path`: message`), about valid configurations:
  open mode     \"mode\": \"open\" (one warning per missing identity / policy section)
  example keys  a key or secret copied from this repository's examples: the demo STS client
                secret, the demo attestation key, the session key of envoy/routing.yaml, test
                session keys (the field is named, the value never printed)
A warning fails the check unless accepted:
  --allow-open             accept open mode (a deliberate open deployment)
  --allow-example-secrets  accept the examples' keys and secrets (the shipped demo files only)
Accepted warnings are still printed.

Exit status 1 when any file has a problem or a warning that was not accepted.
";

const TEST_HELP: &str = "\
warden test <bundle-dir>...

Runs the decision tests of each bundle directory: `tests.toml` cases evaluated against
`bundle.toml` with the filter's decision function. Prints one line per case (PASS/FAIL, the
decision, the deciding rule and its reason; for a failure what was expected), a note naming the
rules that decided no passing case, and finally `N passed, M failed`. Exit status 1 on any failure.

tests.toml:
  issuers = [{ issuer = \"https://corp.example\", name = \"corp\" }, \"https://partner.example\"]
                                 # the user issuers bundle `users` entries name (default: one,
                                 # https://issuer.test.invalid)
  [users.alice]                  # sub defaults to the key
  issuer = \"corp\"               # URL or name of one of `issuers` (default: the only one)
  groups = [\"it-admins\"]  roles = [\"admin\"]  scopes = [\"HR_read\"]
  [agents.claude]                # sub defaults to \"agent:claude\"
  type = \"assistant\"  provider = \"anthropic\"  model = \"claude-sonnet-4\"
  capabilities = [\"tools:call\"]  trust_level = \"high\"  delegation_depth = 1
  scopes = [\"mcp:tools\"]        # delegated scopes (default: all of the user's)
  [[cases]]
  name = \"IT admins delete files\"
  user = \"alice\"                 # or an inline table { sub = \"x\", groups = [...] }; or anonymous = true
  agent = \"claude\"               # optional; a key of [agents] or an inline table
  tool = \"delete_file\"           # or prompt / resource; or only method = \"tools/list\"
                                 # (method = \"completion/complete\" + prompt / resource: a completion)
  arguments = { path = \"/tmp/x\" }
  server = \"corp\"                # default: the bundle's only server
  at = \"2026-01-10T10:00:00+01:00\" # default: Monday 2026-01-05 10:00 in the bundle's time zone
  live_hash = \"sha256:...\"       # optional: the tool's live definition hash
  purpose = \"listing\"            # optional: decide as for a list answer
  decision = \"allow\"             # or \"deny\"
  rule = \"files.delete.it\"       # optional: the deciding rule (default.deny, registry.* too)
  [[cases]]                      # list visibility
  name = \"what bob sees\"
  user = \"bob\"
  tools = [\"echo\", \"delete_file\"]
  expect_visible = [\"echo\"]
";

const COMPILE_HELP: &str = "\
warden compile [--compact] <bundle.toml>

Validates the bundle and prints it as the JSON object that goes under \"policy\" in the plugin
configuration. --compact prints it on one line (for a single-quoted Envoy `value:`).
";

const PIN_HELP: &str = "\
warden pin --url http://HOST:PORT/PATH [options]

Connects to an MCP server over Streamable HTTP (plain http only), lists its tools (following
pagination) and prints registry entries for bundle.toml: one [[servers.tools]] per tool with its
definition hash, preceded by its description as a comment. Review them before approving.

  --url URL              the server's MCP endpoint (its path becomes the server's `path`)
  --server NAME          registry name of the server (default: the server's serverInfo.name)
  --header \"K: V\"        extra request header, e.g. \"Authorization: Bearer ...\" (repeatable)
  --approved-for GROUP   print the tools as approved for GROUP (repeatable; \"*\": everyone
                         authenticated); without it they are printed as status = \"registered\"
  --timeout SECONDS      for the whole exchange (default 30)
";

/// A subcommand: `Ok(false)` when something failed (exit 1), `Err` for a usage error (exit 2).
type Command = fn(&[String]) -> Result<bool, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let wants_help = rest.iter().any(|a| a == "--help" || a == "-h");
    let (help, run): (&str, Command) = match command.as_str() {
        "check" => (CHECK_HELP, run_check),
        "test" => (TEST_HELP, run_test),
        "compile" => (COMPILE_HELP, run_compile),
        "pin" => (PIN_HELP, run_pin),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprint!("warden: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if wants_help {
        print!("{help}");
        return ExitCode::SUCCESS;
    }
    match run(rest) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(usage) => {
            eprint!("warden {command}: {usage}\n\n{help}");
            ExitCode::from(2)
        }
    }
}

fn files(args: &[String]) -> Result<&[String], String> {
    if args.is_empty() {
        return Err("no file given".into());
    }
    if let Some(opt) = args.iter().find(|a| a.starts_with('-')) {
        return Err(format!("unknown option `{opt}`"));
    }
    Ok(args)
}

fn run_check(args: &[String]) -> Result<bool, String> {
    let mut accept = check::Accept::default();
    let mut rest = Vec::new();
    for a in args {
        match a.as_str() {
            "--allow-open" => accept.open = true,
            "--allow-example-secrets" => accept.example_secrets = true,
            _ => rest.push(a.clone()),
        }
    }
    let mut ok = true;
    for file in files(&rest)? {
        match check::check_file(file) {
            Ok(checked) => {
                for w in &checked.warnings {
                    println!("{}", w.problem);
                }
                let refused: Vec<&str> = [
                    (check::WarningKind::OpenMode, "open mode (--allow-open)"),
                    (
                        check::WarningKind::ExampleSecret,
                        "example secrets (--allow-example-secrets)",
                    ),
                ]
                .into_iter()
                .filter(|(kind, _)| {
                    !accept.accepts(*kind) && checked.warnings.iter().any(|w| w.kind == *kind)
                })
                .map(|(_, what)| what)
                .collect();
                if refused.is_empty() {
                    println!("{file}: ok ({})", checked.summary);
                } else {
                    ok = false;
                    println!(
                        "{file}: not accepted: {} ({})",
                        refused.join(", "),
                        checked.summary
                    );
                }
            }
            Err(problems) => {
                ok = false;
                for p in problems {
                    println!("{p}");
                }
            }
        }
    }
    Ok(ok)
}

fn run_test(args: &[String]) -> Result<bool, String> {
    let (mut passed, mut failed) = (0, 0);
    for dir in files(args)? {
        let report = cases::test_dir(dir);
        for line in &report.lines {
            println!("{line}");
        }
        passed += report.passed;
        failed += report.failed;
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

fn run_compile(args: &[String]) -> Result<bool, String> {
    let compact = args.iter().any(|a| a == "--compact");
    let rest: Vec<String> = args.iter().filter(|a| *a != "--compact").cloned().collect();
    let [file] = files(&rest)? else {
        return Err("give exactly one bundle".into());
    };
    match bundle::load(file) {
        Ok(b) => {
            let text = if compact {
                serde_json::to_string(&b.json)
            } else {
                serde_json::to_string_pretty(&b.json)
            };
            match text {
                Ok(t) => {
                    println!("{t}");
                    Ok(true)
                }
                Err(e) => {
                    eprintln!("{file}: cannot encode as JSON: {e}");
                    Ok(false)
                }
            }
        }
        Err(p) => {
            eprintln!("{p}");
            Ok(false)
        }
    }
}

fn run_pin(args: &[String]) -> Result<bool, String> {
    let mut opts = pin::PinOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--url" => opts.url = value("--url")?,
            "--server" => opts.server = Some(value("--server")?),
            "--header" => opts.headers.push(pin::parse_header(&value("--header")?)?),
            "--approved-for" => opts.approved_for.push(value("--approved-for")?),
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--timeout `{v}` is not a number of seconds"))?;
                opts.timeout = Some(Duration::from_secs(secs));
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if opts.url.is_empty() {
        return Err("--url is required".into());
    }
    match pin::fetch_tools(&opts).and_then(|found| pin::render(&found, &opts)) {
        Ok(text) => {
            print!("{text}");
            Ok(true)
        }
        Err(e) => {
            eprintln!("warden pin: {e}");
            Ok(false)
        }
    }
}
