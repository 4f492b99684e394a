//! The parameter types an unnamed statement declares: without a prepare, the server
//! does not say what it expects, so the client names a type for each parameter.

use bytes::BytesMut;
use tokio_postgres::types::{ToSql, Type, WrongType};

/// The types a parameter may be declared as, in the order they are tried: the first
/// its Rust type accepts wins. Where a Rust type accepts several, the order picks the
/// one that loses nothing (`text` over `varchar`, `name` and `unknown` for strings,
/// `timestamptz` over `timestamp` for `SystemTime`, `jsonb` over `json`); the server
/// converts from it where a column or function wants a relative (`text` to
/// `varchar`, `int8` compared with `int4`).
const CANDIDATES: &[Type] = &[
    Type::BOOL,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::FLOAT4,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::TEXT,
    Type::BYTEA,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMP,
    Type::DATE,
    Type::TIME,
    Type::TIMETZ,
    Type::INTERVAL,
    Type::UUID,
    Type::JSONB,
    Type::JSON,
    Type::INET,
    Type::CIDR,
    Type::MACADDR,
    Type::MACADDR8,
    Type::VARBIT,
    Type::BIT,
    Type::POINT,
    Type::BOX,
    Type::PATH,
    Type::OID,
    Type::CHAR,
    Type::MONEY,
    Type::PG_LSN,
    Type::INT4_RANGE,
    Type::INT8_RANGE,
    Type::NUM_RANGE,
    Type::TS_RANGE,
    Type::TSTZ_RANGE,
    Type::DATE_RANGE,
    Type::VARCHAR,
    Type::BPCHAR,
    Type::NAME,
    Type::BOOL_ARRAY,
    Type::INT2_ARRAY,
    Type::INT4_ARRAY,
    Type::INT8_ARRAY,
    Type::FLOAT4_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::NUMERIC_ARRAY,
    Type::TEXT_ARRAY,
    Type::BYTEA_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::TIMESTAMP_ARRAY,
    Type::DATE_ARRAY,
    Type::TIME_ARRAY,
    Type::UUID_ARRAY,
    Type::JSONB_ARRAY,
    Type::JSON_ARRAY,
    Type::INET_ARRAY,
    Type::CIDR_ARRAY,
    Type::MACADDR_ARRAY,
    Type::OID_ARRAY,
    Type::CHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::BPCHAR_ARRAY,
    Type::NAME_ARRAY,
];

/// Each parameter with the type it is declared as: the first of [`CANDIDATES`] its
/// Rust type accepts.
///
/// A value whose Rust type accepts none of them (a type defined in the database, an
/// extension's type) is declared `unknown`; encoding it then fails with
/// tokio-postgres's own error naming the Rust type, for the caller to pass its type
/// explicitly with `query_typed`.
pub(crate) fn declared<'a>(
    params: &[&'a (dyn ToSql + Sync)],
) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    let mut scratch = BytesMut::new();
    params
        .iter()
        .map(|&param| (param, declared_type(param, &mut scratch)))
        .collect()
}

/// `ToSql::accepts` needs the Rust type, which a `dyn ToSql` hides; `to_sql_checked`
/// asks it first and answers `WrongType` when it says no. Any other answer, success or
/// a failure to encode this value, means the type is accepted.
fn declared_type(param: &(dyn ToSql + Sync), scratch: &mut BytesMut) -> Type {
    for candidate in CANDIDATES {
        scratch.clear();
        match param.to_sql_checked(candidate, scratch) {
            Err(e) if e.is::<WrongType>() => continue,
            _ => return candidate.clone(),
        }
    }
    Type::UNKNOWN
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn each_rust_type_gets_the_type_that_loses_nothing() {
        let (text, string, bytes) = ("x", String::from("y"), vec![1_u8, 2]);
        let none: Option<i64> = None;
        let ints = vec![1_i32, 2];
        let names = vec!["a".to_owned()];
        let params: [&(dyn ToSql + Sync); 14] = [
            &true,
            &1_i16,
            &1_i32,
            &1_i64,
            &1.5_f32,
            &1.5_f64,
            &text,
            &string,
            &bytes,
            &SystemTime::now(),
            &none,
            &ints,
            &names,
            &1_u32,
        ];
        let types: Vec<Type> = declared(&params).into_iter().map(|(_, t)| t).collect();
        assert_eq!(
            types,
            [
                Type::BOOL,
                Type::INT2,
                Type::INT4,
                Type::INT8,
                Type::FLOAT4,
                Type::FLOAT8,
                Type::TEXT,
                Type::TEXT,
                Type::BYTEA,
                Type::TIMESTAMPTZ,
                Type::INT8,
                Type::INT4_ARRAY,
                Type::TEXT_ARRAY,
                Type::OID,
            ]
        );
    }

    #[test]
    fn a_type_no_builtin_accepts_is_declared_unknown() {
        #[derive(Debug)]
        struct Mood;
        impl ToSql for Mood {
            fn to_sql(
                &self,
                _: &Type,
                _: &mut BytesMut,
            ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
            {
                Ok(tokio_postgres::types::IsNull::No)
            }
            fn accepts(ty: &Type) -> bool {
                ty.name() == "mood"
            }
            tokio_postgres::types::to_sql_checked!();
        }
        assert_eq!(declared(&[&Mood])[0].1, Type::UNKNOWN);
    }
}
