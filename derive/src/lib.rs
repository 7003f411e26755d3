//! `#[derive(Tree)]`: makes a struct a parameter tree of ferrax (`ferrax::tree::Tree`).
//!
//! The struct must be generic over its leaf type (`struct Layer<T> { w: T, b: T }`), so that
//! the same struct can hold `Array`s outside a trace, `Tensor`s inside one, and gradients of
//! the same structure. Each field is a subtree, in declaration order, unless it is marked
//! `#[tree(skip)]`: then it is static data, kept in the tree's structure (and so compared and
//! hashed with it) rather than among its leaves. With several type parameters, name the leaf
//! parameter with `#[tree(leaf = T)]` on the struct.
//!
//! ```
//! use ferrax::Tree;
//! #[derive(Tree, Clone, Debug)]
//! struct Layer<T> { w: T, b: T }
//! #[derive(Tree, Clone, Debug)]
//! struct Mlp<T> { layers: Vec<Layer<T>>, #[tree(skip)] name: &'static str }
//! ```
//!
//! Each misuse is a compile error at the offending item. Enums and unions are refused
//! ("#[derive(Tree)] supports structs only"):
//!
//! ```compile_fail
//! #[derive(ferrax::Tree)]
//! enum Choice<T> { A(T), B(T) }
//! ```
//!
//! So is an unknown option:
//!
//! ```compile_fail
//! #[derive(ferrax::Tree)]
//! struct Layer<T> { #[tree(skipp)] w: T }
//! ```
//!
//! A struct without a leaf type parameter:
//!
//! ```compile_fail
//! #[derive(ferrax::Tree)]
//! struct Fixed { w: f64 }
//! ```
//!
//! A skipped field whose type mentions the leaf type (static data cannot change with it):
//!
//! ```compile_fail
//! #[derive(ferrax::Tree)]
//! struct Cache<T> { w: T, #[tree(skip)] last: Option<T> }
//! ```
//!
//! And a field that is not a tree (here a name that should be `#[tree(skip)]`), whose error
//! points at the field's type: "`&'static str` is not a parameter tree with leaves of type
//! `T`".
//!
//! ```compile_fail
//! #[derive(ferrax::Tree)]
//! struct Named<T> { w: T, name: &'static str }
//! ```

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Fields, GenericParam, Ident, Index, Member};

/// Derives `ferrax::tree::Tree` for a struct generic over its leaf type; see the crate
/// documentation for the rules and `ferrax::tree` for the trait.
#[proc_macro_derive(Tree, attributes(tree))]
pub fn derive_tree(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// One field of the struct, as the expansion needs it.
struct Field {
    member: Member,
    ty: syn::Type,
    skip: bool,
}

/// The struct-level options: the leaf type parameter, when named.
fn struct_leaf(input: &DeriveInput) -> syn::Result<Option<Ident>> {
    let mut leaf = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("tree")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("leaf") {
                let id: Ident = meta.value()?.parse()?;
                leaf = Some(id);
                Ok(())
            } else {
                Err(meta
                    .error("unknown #[tree(...)] option on a struct; the one option is `leaf = T`"))
            }
        })?;
    }
    Ok(leaf)
}

/// Whether a field carries `#[tree(skip)]`; any other option is an error.
fn field_skip(field: &syn::Field) -> syn::Result<bool> {
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("tree")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(meta.error(
                    "unknown #[tree(...)] option on a field; the one option is `skip` (static \
                     data, not leaves)",
                ))
            }
        })?;
    }
    Ok(skip)
}

/// Whether `tokens` mention the identifier `id` anywhere.
fn mentions(tokens: TokenStream2, id: &Ident) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => &i == id,
        TokenTree::Group(g) => mentions(g.stream(), id),
        _ => false,
    })
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let data = match &input.data {
        Data::Struct(s) => s,
        Data::Enum(e) => {
            return Err(syn::Error::new(
                e.enum_token.span,
                "#[derive(Tree)] supports structs only",
            ))
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                "#[derive(Tree)] supports structs only",
            ))
        }
    };
    let name = &input.ident;
    let type_params: Vec<&Ident> = input.generics.type_params().map(|p| &p.ident).collect();
    let leaf = match (struct_leaf(input)?, type_params.as_slice()) {
        (Some(l), _) => {
            if !type_params.contains(&&l) {
                return Err(syn::Error::new(
                    l.span(),
                    format!("#[tree(leaf = {l})]: `{l}` is not a type parameter of `{name}`"),
                ));
            }
            l
        }
        (None, [one]) => (*one).clone(),
        (None, []) => {
            return Err(syn::Error::new(
                name.span(),
                format!(
                    "#[derive(Tree)] needs a struct generic over its leaf type, e.g. \
                     `struct {name}<T> {{ w: T, b: T }}`, so that the same structure can hold \
                     arrays, tensors and gradients"
                ),
            ))
        }
        (None, _) => {
            return Err(syn::Error::new(
                input.generics.span(),
                "#[derive(Tree)] on a struct with several type parameters: name the leaf type \
                 with #[tree(leaf = T)]",
            ))
        }
    };

    let mut fields = Vec::new();
    for (k, f) in data.fields.iter().enumerate() {
        let member = match &f.ident {
            Some(id) => Member::Named(id.clone()),
            None => Member::Unnamed(Index {
                index: k as u32,
                span: f.ty.span(),
            }),
        };
        let skip = field_skip(f)?;
        let ty = &f.ty;
        if skip && mentions(quote!(#ty), &leaf) {
            return Err(syn::Error::new(
                f.ty.span(),
                format!(
                    "a #[tree(skip)] field is static data and cannot depend on the leaf type \
                     `{leaf}` (the same struct holds arrays, tensors and gradients)"
                ),
            ));
        }
        fields.push(Field {
            member,
            ty: f.ty.clone(),
            skip,
        });
    }

    let krate = quote!(::ferrax::tree);
    let (_, ty_generics, where_clause) = input.generics.split_for_impl();
    // The struct's own parameters (with their bounds), after the added `TreeLeaf`.
    // Lifetimes must come first; defaults are not allowed on an impl's parameters.
    let mut lifetimes = Vec::new();
    let mut others = Vec::new();
    for p in &input.generics.params {
        match p {
            GenericParam::Lifetime(l) => lifetimes.push(quote!(#l)),
            GenericParam::Type(t) => {
                let (i, b) = (&t.ident, &t.bounds);
                others.push(if b.is_empty() {
                    quote!(#i)
                } else {
                    quote!(#i: #b)
                });
            }
            GenericParam::Const(c) => {
                let (i, t) = (&c.ident, &c.ty);
                others.push(quote!(const #i: #t));
            }
        }
    }
    let mut where_preds: Vec<TokenStream2> = where_clause
        .map(|w| w.predicates.iter().map(|p| quote!(#p)).collect())
        .unwrap_or_default();
    // The leaf type parameter may itself be any tree of `TreeLeaf` leaves, so that nested
    // trees such as a Jacobian's `Layer<Layer<Array>>` are trees of arrays too.
    let tl = Ident::new("TreeLeaf", Span::call_site());
    where_preds.push(quote!(#leaf: #krate::Tree<#tl>));

    // `Self` with the leaf parameter replaced by `__FerraxU`.
    let u = Ident::new("__FerraxU", Span::call_site());
    let mapped_args: Vec<TokenStream2> = input
        .generics
        .params
        .iter()
        .map(|p| match p {
            GenericParam::Type(t) if t.ident == leaf => {
                quote!(<#leaf as #krate::Tree<#tl>>::Map<#u>)
            }
            GenericParam::Type(t) => {
                let i = &t.ident;
                quote!(#i)
            }
            GenericParam::Lifetime(l) => {
                let l = &l.lifetime;
                quote!(#l)
            }
            GenericParam::Const(c) => {
                let i = &c.ident;
                quote!(#i)
            }
        })
        .collect();

    let name_str = name.to_string();
    let tree_fields: Vec<&Field> = fields.iter().filter(|f| !f.skip).collect();
    let keys: Vec<String> = tree_fields
        .iter()
        .map(|f| match &f.member {
            Member::Named(id) => id.to_string(),
            Member::Unnamed(i) => i.index.to_string(),
        })
        .collect();
    let n_statics = fields.iter().filter(|f| f.skip).count();
    let n_children = keys.len();

    let mut defs = Vec::new();
    let mut visits = Vec::new();
    let mut visits_mut = Vec::new();
    let mut intos = Vec::new();
    let mut statics = Vec::new();
    for (f, key) in tree_fields.iter().zip(&keys) {
        let (m, ty) = (&f.member, &f.ty);
        let sp = ty.span();
        defs.push(quote_spanned!(sp=>
            (#krate::Key::Field(#key), <#ty as #krate::Tree<#tl>>::def(&self.#m))));
        visits.push(quote_spanned!(sp=> <#ty as #krate::Tree<#tl>>::for_each_leaf(&self.#m, f);));
        visits_mut.push(
            quote_spanned!(sp=> <#ty as #krate::Tree<#tl>>::for_each_leaf_mut(&mut self.#m, f);),
        );
        intos.push(quote_spanned!(sp=> <#ty as #krate::Tree<#tl>>::into_each_leaf(self.#m, f);));
    }
    let mut inits = Vec::new();
    // The checks of `matches_def`, one per field in order.
    let mut matches = Vec::new();
    let (mut child, mut stat) = (0usize, 0usize);
    for f in &fields {
        let (m, ty) = (&f.member, &f.ty);
        let sp = ty.span();
        if f.skip {
            matches.push(quote_spanned!(sp=> node.static_is::<#ty>(#stat, &self.#m)));
            statics.push(quote_spanned!(sp=> #krate::Static::new::<#ty>(
                ::core::clone::Clone::clone(&self.#m))));
            inits.push(quote_spanned!(sp=> #m: node.static_value::<#ty>(#stat)?));
            stat += 1;
        } else {
            let key = &keys[child];
            matches.push(quote_spanned!(sp=> node.child_is::<#tl, #ty>(
                #child, &#krate::Key::Field(#key), &self.#m)));
            inits.push(quote_spanned!(sp=> #m: node.child::<#tl, #ty>(#child, leaves)?));
            child += 1;
        }
    }
    let ctor = match &data.fields {
        Fields::Named(_) | Fields::Unnamed(_) => quote!(#name { #(#inits),* }),
        Fields::Unit => quote!(#name),
    };
    let into_body = if intos.is_empty() {
        quote!(let _ = (self, f);)
    } else {
        quote!(#(#intos)*)
    };
    let visit_body = if visits.is_empty() {
        quote!(let _ = f;)
    } else {
        quote!(#(#visits)*)
    };
    let visit_mut_body = if visits_mut.is_empty() {
        quote!(let _ = f;)
    } else {
        quote!(#(#visits_mut)*)
    };

    Ok(quote! {
        #[automatically_derived]
        impl<#(#lifetimes,)* #tl: #krate::Leaf, #(#others),*> #krate::Tree<#tl> for #name #ty_generics
        where #(#where_preds),*
        {
            type Map<#u: #krate::Leaf> = #name<#(#mapped_args),*>;

            fn def(&self) -> #krate::TreeDef {
                #krate::TreeDef::node(
                    #name_str,
                    ::std::vec![#(#defs),*],
                    ::std::vec![#(#statics),*],
                )
            }

            fn matches_def(&self, def: &#krate::TreeDef) -> bool {
                def.node_of(#name_str, #n_children, #n_statics)
                    .is_some_and(|node| {
                        let _ = &node;
                        true #(&& #matches)*
                    })
            }

            fn for_each_leaf<'__ferrax>(
                &'__ferrax self,
                f: &mut dyn FnMut(&'__ferrax #tl),
            ) {
                #visit_body
            }

            fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut #tl)) {
                #visit_mut_body
            }

            fn into_each_leaf(self, f: &mut dyn FnMut(#tl)) {
                #into_body
            }

            fn unflatten(
                def: &#krate::TreeDef,
                leaves: &mut dyn Iterator<Item = #tl>,
            ) -> ::core::result::Result<Self, #krate::TreeError> {
                let node = def.expect_node(#name_str, &[#(#keys),*], #n_statics)?;
                let _ = (&node, &leaves);
                ::core::result::Result::Ok(#ctor)
            }
        }
    })
}
