//! auth: the wire types of this area (see `wire`).
