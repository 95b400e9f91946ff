//! The names of the domain's choices (mode, conflict policy, endpoint type), spelled once: the
//! command line, the config file, reports and JSON all take them from here.

/// A choice with a fixed set of values, each with one name.
pub trait Named: Copy + Sized + 'static {
    /// Every value, in the order help texts list them.
    const ALL: &'static [Self];

    fn name(self) -> &'static str;

    fn from_name(word: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|value| value.name() == word)
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|value| value.name()).collect()
    }
}

/// A word that names none of a choice's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{word:?} is not one of {}", .expected.join(", "))]
pub struct UnknownName {
    pub word: String,
    pub expected: Vec<&'static str>,
}

/// Implements [`Named`], `Display` and `FromStr` for an enum from one list of `Variant => "name"`.
macro_rules! named {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $crate::core::names::Named for $ty {
            const ALL: &'static [Self] = &[$(<$ty>::$variant),+];

            fn name(self) -> &'static str {
                match self {
                    $(<$ty>::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::core::names::Named::name(*self))
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::core::names::UnknownName;

            fn from_str(word: &str) -> Result<Self, Self::Err> {
                use $crate::core::names::Named;
                Self::from_name(word).ok_or_else(|| $crate::core::names::UnknownName {
                    word: word.to_string(),
                    expected: Self::names(),
                })
            }
        }
    };
}
pub(crate) use named;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{ConflictPolicy, Mode};

    #[test]
    fn every_name_reads_back_as_its_value() {
        for mode in Mode::ALL {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(*mode));
        }
        for policy in ConflictPolicy::ALL {
            assert_eq!(policy.to_string().parse::<ConflictPolicy>(), Ok(*policy));
        }
        assert_eq!(Mode::TwoWay.to_string(), "two-way");
        let err = "mirror".parse::<Mode>().unwrap_err();
        assert_eq!(err.to_string(), r#""mirror" is not one of simple, clone, two-way"#);
    }
}
