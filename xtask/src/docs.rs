//! Turns multi-line `#[doc = "..."]` attributes into one `///` line each.
//!
//! prettyplease prints a multi-line doc string as a `/** ... */` block, and
//! rustfmt then indents its continuation lines, which rustdoc reads as an
//! indented code block (and runs as a doctest). One attribute per line prints
//! as ordinary `///` comments that read well and mean what the spec says.
//!
//! It also documents the public items progenitor leaves bare (builder setters,
//! `builder()` constructors, fields that only reference another schema), so
//! that the generated crate passes `missing_docs` like the hand-written ones.

use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Expr, Lit, Meta, parse_quote};

/// Rewrites every doc attribute in `file`.
pub fn split_doc_lines(file: &mut syn::File) {
    DocSplitter {
        modules: Vec::new(),
    }
    .visit_file_mut(file);
}

struct DocSplitter {
    /// The names of the modules the visitor is inside.
    modules: Vec<String>,
}

fn has_doc(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| attr.path().is_ident("doc"))
}

fn add_doc(attrs: &mut Vec<Attribute>, text: String) {
    if !has_doc(attrs) {
        let text = format!(" {text}");
        attrs.insert(0, parse_quote!(#[doc = #text]));
    }
}

fn is_pub(vis: &syn::Visibility) -> bool {
    matches!(vis, syn::Visibility::Public(_))
}

impl DocSplitter {
    fn in_builder_module(&self) -> bool {
        self.modules.last().is_some_and(|m| m == "builder")
    }

    fn document_item_struct(&self, node: &mut syn::ItemStruct) {
        if is_pub(&node.vis) && self.in_builder_module() {
            let name = &node.ident;
            add_doc(&mut node.attrs, format!("Builder for [`super::{name}`]."));
        }
    }

    fn document_impl_fn(&self, node: &mut syn::ImplItemFn) {
        if !is_pub(&node.vis) {
            return;
        }
        let name = node.sig.ident.to_string();
        let text = match name.as_str() {
            "builder" => "A builder for this type, with the spec's defaults filled in.".to_string(),
            "new" => "Starts building this operation for `client`.".to_string(),
            "body_map" => "Edits the body through its builder.".to_string(),
            field => format!(
                "Sets `{}`; the value is checked against the spec when the builder is used.",
                field.trim_end_matches('_')
            ),
        };
        add_doc(&mut node.attrs, text);
    }

    fn document_field(&self, node: &mut syn::Field) {
        if let (true, Some(ident)) = (is_pub(&node.vis), &node.ident) {
            let name = ident.to_string();
            add_doc(
                &mut node.attrs,
                format!(
                    "The `{}` field, as its type documents it.",
                    name.trim_end_matches('_')
                ),
            );
        }
    }
}

fn split(attrs: &mut Vec<Attribute>) {
    let mut out = Vec::with_capacity(attrs.len());
    for attr in attrs.drain(..) {
        let text = match &attr.meta {
            Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                Expr::Lit(lit) => match &lit.lit {
                    Lit::Str(s)
                        if s.value().contains('\n') || !s.value().starts_with([' ', '\n']) =>
                    {
                        Some(s.value())
                    }
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        };
        let Some(text) = text else {
            out.push(attr);
            continue;
        };
        let inner = matches!(attr.style, syn::AttrStyle::Inner(_));
        // progenitor lists parameters as `- name: description`; a description
        // that spans lines must be indented to stay inside its list item.
        let mut in_list_item = false;
        for line in text.trim_end().lines() {
            let line = if line.starts_with("- ") {
                in_list_item = true;
                line.to_string()
            } else if line.trim().is_empty() {
                in_list_item = false;
                String::new()
            } else if in_list_item {
                format!("  {line}")
            } else {
                line.to_string()
            };
            // `///` adds no space of its own; keep the conventional one.
            let line = if line.is_empty() {
                line
            } else {
                format!(" {line}")
            };
            out.push(if inner {
                parse_quote!(#![doc = #line])
            } else {
                parse_quote!(#[doc = #line])
            });
        }
    }
    *attrs = out;
}

macro_rules! visit_attrs {
    ($($method:ident($ty:ty) $(=> $extra:ident)?;)*) => {
        impl VisitMut for DocSplitter {
            $(fn $method(&mut self, node: &mut $ty) {
                split(&mut node.attrs);
                $(self.$extra(node);)?
                visit_mut::$method(self, node);
            })*

            fn visit_item_mod_mut(&mut self, node: &mut syn::ItemMod) {
                split(&mut node.attrs);
                self.modules.push(node.ident.to_string());
                visit_mut::visit_item_mod_mut(self, node);
                self.modules.pop();
            }
        }
    };
}

visit_attrs! {
    visit_file_mut(syn::File);
    visit_item_const_mut(syn::ItemConst);
    visit_item_enum_mut(syn::ItemEnum);
    visit_item_fn_mut(syn::ItemFn);
    visit_item_impl_mut(syn::ItemImpl);
    visit_item_static_mut(syn::ItemStatic);
    visit_item_struct_mut(syn::ItemStruct) => document_item_struct;
    visit_item_trait_mut(syn::ItemTrait);
    visit_item_type_mut(syn::ItemType);
    visit_field_mut(syn::Field) => document_field;
    visit_variant_mut(syn::Variant);
    visit_impl_item_fn_mut(syn::ImplItemFn) => document_impl_fn;
    visit_impl_item_const_mut(syn::ImplItemConst);
    visit_impl_item_type_mut(syn::ImplItemType);
    visit_trait_item_fn_mut(syn::TraitItemFn);
}
