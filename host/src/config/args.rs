//! The settings as flags: one per declaration that has one, built from the
//! declarations (see [`super::DECLARATIONS`]), plus `--config FILE`.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::{Config, ConfigError, DECLARATIONS, Shape};

/// The flags given: `--config`, and the texts of each setting's flag, by
/// declaration.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub config: Option<PathBuf>,
    pub flags: Vec<(usize, Vec<String>)>,
}

impl Args {
    /// The configuration these flags, the environment and the file give.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref(), &self.flags)
    }
}

impl clap::FromArgMatches for Args {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Args::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(file) = matches.get_one::<PathBuf>("config") {
            self.config = Some(file.clone());
        }
        for (i, declaration) in DECLARATIONS.iter().enumerate() {
            let Some(flag) = declaration.flag else {
                continue;
            };
            if let Some(texts) = matches.get_many::<String>(flag) {
                self.flags.retain(|(j, _)| *j != i);
                self.flags.push((i, texts.cloned().collect()));
            }
        }
        Ok(())
    }
}

impl clap::Args for Args {
    fn augment_args(command: Command) -> Command {
        let mut command = command.arg(
            Arg::new("config")
                .long("config")
                .env("LAMEDUCK_CONFIG")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("A YAML config file"),
        );
        for declaration in DECLARATIONS {
            let Some(flag) = declaration.flag else {
                continue;
            };
            let action = match declaration.shape {
                Shape::Pairs | Shape::List => ArgAction::Append,
                Shape::Scalar | Shape::Yaml => ArgAction::Set,
            };
            let env = declaration
                .env
                .map_or(String::new(), |var| format!(" [env: {var}]"));
            command = command.arg(
                Arg::new(flag)
                    .long(flag)
                    .value_name(declaration.value)
                    .action(action)
                    .help(format!(
                        "{}{env} [config: {}]",
                        declaration.help.trim_end_matches('.'),
                        declaration.key
                    )),
            );
        }
        command
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}
