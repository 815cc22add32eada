//! Who reads: the user and role that policies see as `current_user()` and
//! `current_role()`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    CastKind, DataType, Expr, FunctionArguments, Value, VisitMut, VisitorMut,
};

/// A reader of the warehouse, as a server authenticated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub user: String,
    pub role: Option<String>,
}

impl Viewer {
    /// Replaces `current_user()` and `current_role()` (with or without parentheses) in
    /// a policy's expression by this viewer's values, as SQL literals.
    pub(crate) fn bind(&self, expr: &mut Expr) {
        let _ = VisitMut::visit(expr, &mut Bind(self));
    }
}

struct Bind<'a>(&'a Viewer);

impl VisitorMut for Bind<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let takes_nothing = match &function.args {
            FunctionArguments::None => true,
            FunctionArguments::List(list) => list.args.is_empty(),
            FunctionArguments::Subquery(_) => false,
        };
        let name = function.name.to_string().to_ascii_lowercase();
        let value = match name.as_str() {
            "current_user" if takes_nothing => Some(self.0.user.clone()),
            "current_role" if takes_nothing => self.0.role.clone(),
            _ => return ControlFlow::Continue(()),
        };
        *expr = match value {
            Some(text) => Expr::value(Value::SingleQuotedString(text)),
            // A user without a role: a typed NULL, so `current_role() IN (…)` still plans.
            None => Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(Expr::value(Value::Null)),
                data_type: DataType::Varchar(None),
                array: false,
                format: None,
            },
        };
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn bound(viewer: &Viewer, sql: &str) -> String {
        let mut expr = Parser::new(&GenericDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        viewer.bind(&mut expr);
        expr.to_string()
    }

    #[test]
    fn the_viewer_is_bound_as_literals_that_cannot_inject() {
        let ana = Viewer {
            user: "ana'; DROP".into(),
            role: Some("recruiter".into()),
        };
        assert_eq!(
            bound(
                &ana,
                "CASE WHEN current_role() = 'x' THEN a ELSE current_user END"
            ),
            "CASE WHEN 'recruiter' = 'x' THEN a ELSE 'ana''; DROP' END"
        );
        let nobody = Viewer {
            user: "bo".into(),
            role: None,
        };
        assert_eq!(
            bound(
                &nobody,
                "current_role() IN ('a') OR CURRENT_USER = upper('x')"
            ),
            "CAST(NULL AS VARCHAR) IN ('a') OR 'bo' = upper('x')"
        );
    }
}
