//! `settings!`: the one declaration of a scope's settings (server-wide in
//! `config/mod.rs`, per model in `config/model.rs`), and everything that
//! is derived from it, so that a setting is written once (see
//! ARCHITECTURE.md section 5).
//!
//! From one list of fields, split into a `fixed` and a `live` section,
//! the macro generates:
//! - the **layer** struct: every setting `Option<T>` as written (a flag, an
//!   `INFERCACHE_*` variable or a file key), deriving what the caller asks
//!   (clap's `Args` and serde's `Deserialize` for the server, `Deserialize`
//!   for a model); each field's doc comment is its `--help` text;
//! - `fill_from`: the layers merge field by field, an unset one taking the
//!   lower layer's value (the server: flags and environment over the file);
//! - the typed **config** struct and `from_layer`: each value as written
//!   becomes the held value through [`Resolve`], an unset one its default
//!   (a default may use a setting declared above it);
//! - `keep_fixed`: what a reload may not change is the `fixed` section, so
//!   the list a reload keeps is derived, never kept by hand;
//! - the optional **live** struct: the `live` section alone (a model's
//!   knobs, published to its batcher through a `watch`);
//! - `KEYS`: every setting's key and section, for the test that keeps the
//!   README's tables true.
//!
//! Cross-field checks stay hand-written (`validate`), after `from_layer`.
//!
//! The typed config stays flat (`config.key`, not `config.fixed.key`):
//! the file's keys are flat, serde's `flatten` cannot be combined with
//! `deny_unknown_fields` (which catches a misspelt key), and every reader
//! names a setting by its key. The split is in the declaration, and what
//! it is for (the reload's kept list, a model's knobs) is derived from it.

use std::time::Duration;

use bytesize::ByteSize;

/// How a value as written becomes the value the config holds. Most
/// settings hold what was written; sizes hold bytes, optional settings
/// hold `Some`, and `listen` is parsed. The error is the problem alone;
/// the caller names the key.
pub(crate) trait Resolve<Raw>: Sized {
    fn resolve(raw: Raw) -> Result<Self, String>;
}

impl<T> Resolve<T> for T {
    fn resolve(raw: T) -> Result<T, String> {
        Ok(raw)
    }
}

impl<T> Resolve<T> for Option<T> {
    fn resolve(raw: T) -> Result<Option<T>, String> {
        Ok(Some(raw))
    }
}

impl Resolve<humantime::Duration> for Duration {
    fn resolve(raw: humantime::Duration) -> Result<Duration, String> {
        Ok(raw.into())
    }
}

impl Resolve<humantime::Duration> for Option<Duration> {
    fn resolve(raw: humantime::Duration) -> Result<Option<Duration>, String> {
        Ok(Some(raw.into()))
    }
}

impl Resolve<ByteSize> for u64 {
    fn resolve(raw: ByteSize) -> Result<u64, String> {
        Ok(raw.as_u64())
    }
}

/// serde `deserialize_with` for a duration written the humantime way
/// (`"30s"`) into a layer's `humantime::Duration` (the flags' type).
pub(super) fn humantime<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<humantime::Duration>, D::Error> {
    let duration: Option<Duration> = humantime_serde::deserialize(d)?;
    Ok(duration.map(Into::into))
}

/// Declare one scope's settings; see the module docs. A setting is
///
/// ```text
/// /// Help text (also the field's rustdoc).
/// #[arg(...)]        // optional: the flag and its variable
/// #[serde(...)]      // optional: how the file writes it
/// key: Written => Held = default,   // `=> Held` when they differ
/// ```
macro_rules! settings {
    (
        $(#[$layer_meta:meta])*
        pub struct $layer:ident { $($layer_extra:tt)* }

        $(#[$config_meta:meta])*
        pub struct $config:ident {
            $( $(#[doc = $cdoc:expr])* pub $cname:ident : $cty:ty, )*
        }

        fixed {
            $(
                $(#[doc = $fdoc:expr])*
                $(#[arg($($farg:tt)*)])?
                $(#[serde($($fserde:tt)*)])?
                $fname:ident : $fraw:ty $(=> $fty:ty)? = $fdefault:expr,
            )*
        }

        live $( $(#[$live_meta:meta])* pub struct $live:ident )? {
            $(
                $(#[doc = $ldoc:expr])*
                $(#[arg($($larg:tt)*)])?
                $(#[serde($($lserde:tt)*)])?
                $lname:ident : $lraw:ty $(=> $lty:ty)? = $ldefault:expr,
            )*
        }
    ) => {
        $(#[$layer_meta])*
        pub struct $layer {
            $($layer_extra)*
            $(
                $(#[doc = $fdoc])*
                $(#[arg($($farg)*)])?
                #[serde(default)]
                $(#[serde($($fserde)*)])?
                pub $fname: Option<$fraw>,
            )*
            $(
                $(#[doc = $ldoc])*
                $(#[arg($($larg)*)])?
                #[serde(default)]
                $(#[serde($($lserde)*)])?
                pub $lname: Option<$lraw>,
            )*
        }

        impl $layer {
            /// Give every setting this layer leaves unset `lower`'s value.
            #[allow(dead_code)] // a model's settings have one layer only
            fn fill_from(&mut self, lower: &mut $layer) {
                $( if self.$fname.is_none() { self.$fname = lower.$fname.take(); } )*
                $( if self.$lname.is_none() { self.$lname = lower.$lname.take(); } )*
            }
        }

        $(#[$config_meta])*
        pub struct $config {
            $( $(#[doc = $fdoc])* pub $fname: settings!(@held $fraw $(=> $fty)?), )*
            $( $(#[doc = $ldoc])* pub $lname: settings!(@held $lraw $(=> $lty)?), )*
            $( $(#[doc = $cdoc])* pub $cname: $cty, )*
        }

        impl $config {
            /// Every setting's key, in declaration order, and whether a
            /// reload changes it.
            #[cfg(test)]
            pub(crate) const KEYS: &[(&str, bool)] =
                &[$((stringify!($fname), false),)* $((stringify!($lname), true),)*];

            /// The typed settings of `layer`: each value as written, else
            /// its default. The other fields move over as they are.
            fn from_layer(layer: $layer) -> Result<$config, $crate::config::ConfigError> {
                $( let $fname: settings!(@held $fraw $(=> $fty)?) =
                    settings!(@resolve layer.$fname, $fname, $fdefault); )*
                $( let $lname: settings!(@held $lraw $(=> $lty)?) =
                    settings!(@resolve layer.$lname, $lname, $ldefault); )*
                Ok($config {
                    $($fname,)*
                    $($lname,)*
                    $($cname: layer.$cname,)*
                })
            }

            /// Set every fixed setting back to `old`'s value (a running
            /// server cannot change it) and name those that differed.
            #[allow(clippy::clone_on_copy)]
            pub(crate) fn keep_fixed(&mut self, old: &$config) -> Vec<&'static str> {
                let mut kept = Vec::new();
                $(
                    if self.$fname != old.$fname {
                        self.$fname = old.$fname.clone();
                        kept.push(stringify!($fname));
                    }
                )*
                kept
            }
        }

        settings!(@live [$($(#[$live_meta])* $live)?] $config {
            $( $(#[doc = $ldoc])* $lname: settings!(@held $lraw $(=> $lty)?), )*
        });
    };

    (@held $raw:ty) => { $raw };
    (@held $raw:ty => $held:ty) => { $held };

    (@resolve $written:expr, $name:ident, $default:expr) => {
        match $written {
            Some(raw) => $crate::config::declare::Resolve::resolve(raw)
                .map_err(|problem| $crate::config::invalid(stringify!($name), problem))?,
            None => $default,
        }
    };

    (@live [] $config:ident { $($rest:tt)* }) => {};
    (@live [$(#[$meta:meta])* $live:ident] $config:ident {
        $( $(#[doc = $doc:expr])* $name:ident : $ty:ty, )*
    }) => {
        /// The settings a reload changes while running.
        $(#[$meta])*
        pub struct $live {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl $config {
            /// The settings a reload changes while running.
            #[allow(clippy::clone_on_copy)]
            pub fn live(&self) -> $live {
                $live { $( $name: self.$name.clone(), )* }
            }
        }
    };
}
