import jax, jax.numpy as jnp
import jax_lstm_ae as la

B, T, F, E = 8, 50, 3, 16
x = jax.random.normal(jax.random.PRNGKey(0), (B, T, F))           # a padded batch
lengths = jnp.array([50, 50, 40, 33, 20, 50, 12, 7])               # valid steps per example

model = la.make_autoencoder(la.lstm_encoder((2 * E, E)), la.repeat((E, 2 * E)), la.linear(), features=F)
params = model.init(jax.random.PRNGKey(1))
z = model.encode(params, x, lengths)                                # (B, E): one vector per sequence
print("latent", z.shape, "loss", float(model.loss(params, x, lengths)))

model = model.replace(decoder=la.teacher_forced((E,)))              # swap the decoder: a new, checked value
params = model.init(jax.random.PRNGKey(1))
y = model.reconstruct(params, x, lengths)                           # (B, T, F), zeros on padding
print("reconstruction", y.shape, "loss", float(model.loss(params, x, lengths, jax.random.PRNGKey(2))))
