//! How a setting is declared: once, with its YAML key, its flag, its
//! environment variable, its default, the kind of value it takes and its
//! help — the way wasmtime's `cli-flags` declares its options. The
//! [`settings!`] macro turns the declarations into the [`Config`] struct,
//! its defaults, the table the three layers read ([`DECLARATIONS`]) and
//! the summary `/status` shows.
//!
//! [`Config`]: super::Config
//! [`DECLARATIONS`]: super::DECLARATIONS

/// One setting, as declared.
#[derive(Debug, Clone, Copy)]
pub struct Declaration {
    /// The YAML key, dotted: `admin.listen`.
    pub key: &'static str,
    /// The flag, without its dashes: `admin`.
    pub flag: Option<&'static str>,
    /// The environment variable: `LAMEDUCK_ADMIN`.
    pub env: Option<&'static str>,
    /// Why a way to give it is missing, if one is.
    pub why_not: Option<&'static str>,
    /// How a flag's or a variable's text is read.
    pub shape: Shape,
    /// What the value looks like, for `--help`: `DURATION`.
    pub value: &'static str,
    /// A value the setting takes, as text (the tests give it all three ways).
    pub example: &'static str,
    /// One line of help.
    pub help: &'static str,
}

/// How a flag's or an environment variable's text becomes the YAML value
/// the file would hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One value: `30s`.
    Scalar,
    /// `key=value` pairs: a flag given again adds one, a variable holds them
    /// separated by commas.
    Pairs,
    /// Values: a flag given again adds one, a variable holds them separated
    /// by commas.
    List,
    /// YAML (or JSON) text: `[{name: web, connections: {}}]`.
    Yaml,
}

/// A kind of value a setting takes: how it is read from YAML (the file's,
/// or the text of a flag or a variable made YAML by its [`Shape`]), how a
/// later layer joins an earlier one, and how `/status` shows it.
pub trait Kind {
    /// The value.
    type Value;
    /// How its text is read.
    const SHAPE: Shape = Shape::Scalar;
    /// Reads it; the error says what is wrong with the value.
    fn read(yaml: &serde_yaml::Value) -> Result<Self::Value, String>;
    /// A later layer's value over an earlier one's: replaces it.
    fn join(earlier: &mut Self::Value, later: Self::Value) {
        *earlier = later;
    }
    /// The value as `/status` shows it: as the file would hold it, or
    /// without what must not be shown.
    fn show(value: &Self::Value) -> serde_json::Value;
}

/// `Some("x")` for `"x"`, `None` for `none` or nothing.
macro_rules! optional {
    () => {
        None
    };
    (none) => {
        None
    };
    ($text:literal) => {
        Some($text)
    };
}

/// Declares the settings: each entry is
///
/// ```text
/// field: Type = default, "yaml.key", flag "flag"|none, env "VAR"|none,
///     as Kind, "VALUE", "example", "help"[, why "why a way is missing"];
/// ```
macro_rules! settings {
    ($(
        $field:ident: $ty:ty = $default:expr,
            $key:literal, flag $flag:tt, env $env:tt,
            as $kind:ty, $value:literal, $example:literal, $help:literal
            $(, why $why:literal)?;
    )*) => {
        /// The resolved configuration: the defaults, then the file, the
        /// environment and the flags, each over the one before.
        #[derive(Debug, Clone)]
        pub struct Config {
            $(
                #[doc = $help]
                pub $field: $ty,
            )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $field: $default, )* }
            }
        }

        /// Every setting, as declared, in order.
        pub const DECLARATIONS: &[Declaration] = &[
            $(
                Declaration {
                    key: $key,
                    flag: optional!($flag),
                    env: optional!($env),
                    why_not: optional!($($why)?),
                    shape: <$kind as Kind>::SHAPE,
                    value: $value,
                    example: $example,
                    help: $help,
                },
            )*
        ];

        impl Config {
            /// Sets the setting `key` from `yaml`, over what it holds.
            fn set(&mut self, key: &str, yaml: &serde_yaml::Value) -> Result<(), String> {
                match key {
                    $(
                        $key => {
                            let value: $ty = <$kind as Kind>::read(yaml)?;
                            <$kind as Kind>::join(&mut self.$field, value);
                        }
                    )*
                    _ => unreachable!("`{key}` is declared"),
                }
                Ok(())
            }
        }

        /// The summary `/status` shows: each setting by its key, as the file
        /// would hold it (secrets left out).
        impl serde::Serialize for Config {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(DECLARATIONS.len()))?;
                $( map.serialize_entry($key, &<$kind as Kind>::show(&self.$field))?; )*
                map.end()
            }
        }
    };
}

pub(super) use {optional, settings};
