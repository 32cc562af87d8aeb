import jax, jax.numpy as jnp, optax
import jax_lstm_ae as la

mesh = la.use_all_cores()  # first, before JAX runs: batches split over every CPU core (None: one device)

B, T, F, E = 8, 50, 3, 16
x = jax.random.normal(jax.random.PRNGKey(0), (B, T, F))           # a padded batch
lengths = jnp.array([50, 50, 40, 33, 20, 50, 12, 7])               # valid steps per example

model = la.make_autoencoder(la.lstm_encoder((2 * E, E)), la.repeat((E, 2 * E)), la.linear(), features=F)
params = model.init(jax.random.PRNGKey(1))
z = model.encode(params, x, lengths)                                # (B, E): one vector per sequence
print("latent", z.shape, "loss", float(model.loss(params, x, lengths)))

optimizer = optax.adam(1e-3)
state = la.create_train_state(model, optimizer, jax.random.PRNGKey(1))
train_step = la.make_train_step(model, optimizer, mesh=mesh)        # jitted, donates state; rows split over the mesh
state, metrics = train_step(state, la.Batch(x, lengths))
print("devices", 1 if mesh is None else mesh.devices.size, "train loss", float(metrics["loss"]))

model = model.replace(decoder=la.teacher_forced((E,)))              # swap the decoder: a new, checked value
params = model.init(jax.random.PRNGKey(1))
y = model.reconstruct(params, x, lengths)                           # (B, T, F), zeros on padding
print("reconstruction", y.shape, "loss", float(model.loss(params, x, lengths, jax.random.PRNGKey(2))))
