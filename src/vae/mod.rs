//! The VAE family (issue 12), work in progress: so far the float model and its trainer, to
//! measure whether a latent buys anything over the PixelCNN before the integer networks, the
//! bits-back codec (`coding::bits_back`) and the format are built.
//!
//! The design: a latent `z` at 1/8 of the image's resolution (`F = 8`), integer-valued,
//! carries what a radius-3 context cannot see (palette, illumination, texture scale). The
//! likelihood `p(x|z)` is the PixelCNN with a bias from `z` added to its first hidden layer
//! (started from a trained PixelCNN, the bias network from zero, so training starts at the
//! PixelCNN's own NLL); the posterior `q(z|x)` a small network on the image's 8×8 blocks; the
//! prior `p(z)` a learned mixture per latent channel. Coded with bits-back, an image costs
//! about `−log2 p(x|z) − log2 p(z) + log2 q(z|x)` bits with `z` drawn from `q`: the quantity
//! the trainer reports as the *bits-back cost*.
//!
//! - `float_model` (feature `torch`): `VaeFloat`, its loss terms.
//! - `train` (feature `torch`): `llif train vae`.

#[cfg(feature = "torch")]
pub mod float_model;
#[cfg(feature = "torch")]
pub mod train;
