# Fuzzing: every exported function, every callable layer and model method,
# and the `$` accessors are called many times with random bad arguments
# (wrong types, NA/NaN/Inf, negative, fractional and huge numbers, empty
# arrays, zero-length and huge dimensions, wrong ranks and mask shapes).
# Each call must return or signal an R condition; an error must be one of
# ours (class "multihead_error", from abort_arg()/abort_msg()) or R's own
# argument-matching error naming the argument. A crash kills the test run, a
# hang trips the time limit, and repeated failing calls must not grow memory.
#
# To cover a new export, add ONE line to `fuzz_exports`: the export's name =
# a quoted VALID call spelling out the arguments to fuzz, evaluated in
# fuzz_fixtures() (add any fixture it needs there); the fuzzer checks that it
# succeeds, then mutates it. Calls run in a temporary working directory, so
# functions that write files (with a fuzzed path such as "a") write there.
# FUZZ_SEED=<n> in the environment fuzzes with other random draws.

# Methods of base generics (summary(), print(), plot(), ...): the first
# argument selects the method and is not fuzzed.
method_call <- function(call) structure(substitute(call), keep_first = TRUE)

fuzz_exports <- list(
  backprop = quote(backprop(dense(), x2, grad_output = g2)),
  callback_early_stopping = quote(callback_early_stopping(monitor = "loss", min_delta = 0, patience = 1,
    verbose = 0, mode = "auto", baseline = NULL, restore_best_weights = FALSE, start_from_epoch = 0)),
  callback_lambda = quote(callback_lambda(on_epoch_begin = NULL, on_epoch_end = function(epoch, logs) NULL,
    on_batch_begin = NULL, on_batch_end = NULL, on_train_begin = NULL, on_train_end = NULL)),
  # fit()'s callbacks (h/train)
  callback_backup_and_restore = quote(callback_backup_and_restore(backup_dir = "backup", save_freq = "epoch",
    double_checkpoint = FALSE, delete_checkpoint = TRUE)),
  callback_csv_logger = quote(callback_csv_logger(filename = "log.csv", separator = ",", append = FALSE)),
  callback_learning_rate_scheduler = quote(callback_learning_rate_scheduler(schedule = function(epoch, lr) lr,
    verbose = 0)),
  callback_model_checkpoint = quote(callback_model_checkpoint(filepath = "m-{epoch:02d}-{loss:.2f}.rds",
    monitor = "val_loss", verbose = 0, save_best_only = FALSE, save_weights_only = FALSE, mode = "auto",
    save_freq = "epoch", initial_value_threshold = NULL)),
  callback_reduce_lr_on_plateau = quote(callback_reduce_lr_on_plateau(monitor = "val_loss", factor = 0.1,
    patience = 10, verbose = 0, mode = "auto", min_delta = 1e-04, cooldown = 0, min_lr = 0)),
  callback_terminate_on_nan = quote(callback_terminate_on_nan()),
  # end of h/train's block
  compile = quote(compile(model(), optimizer = "sgd", loss = "mse", metrics = "mae", loss_weights = NULL,
    weighted_metrics = NULL)),
  config_disable_flash_attention = quote(config_disable_flash_attention()),
  config_enable_flash_attention = quote(config_enable_flash_attention()),
  config_is_flash_attention_enabled = quote(config_is_flash_attention_enabled()),
  constraint_maxnorm = quote(constraint_maxnorm(max_value = 2, axis = -1)),
  constraint_minmaxnorm = quote(constraint_minmaxnorm(min_value = 0, max_value = 1, rate = 1, axis = -1)),
  constraint_nonneg = quote(constraint_nonneg()),
  constraint_unitnorm = quote(constraint_unitnorm(axis = -1)),
  count_params = quote(count_params(object = dense_built())),
  evaluate = quote(evaluate(compiled(), x = x3, y = y2, batch_size = 2, verbose = 0, sample_weight = NULL)),
  fit = quote(fit(compiled(), x = x3, y = y2, batch_size = 2, epochs = 1, verbose = 0, callbacks = stop_at_2,
    validation_split = 0, validation_data = NULL, shuffle = TRUE, sample_weight = NULL, initial_epoch = 1)),
  from_config = quote(from_config(config = dense_config)),
  get_config = quote(get_config(object = dense())),
  get_layer = quote(get_layer(model(), name = "fz_dense", index = NULL)),
  get_buffer_cache_size = quote(get_buffer_cache_size()),
  get_num_threads = quote(get_num_threads()),
  get_weights = quote(get_weights(object = dense_built(), trainable = NA)),
  initializer_constant = quote(initializer_constant(value = 0.5)),
  initializer_glorot_normal = quote(initializer_glorot_normal(seed = 1)),
  initializer_glorot_uniform = quote(initializer_glorot_uniform(seed = 1)),
  initializer_he_normal = quote(initializer_he_normal(seed = 1)),
  initializer_he_uniform = quote(initializer_he_uniform(seed = 1)),
  initializer_lecun_normal = quote(initializer_lecun_normal(seed = 1)),
  initializer_lecun_uniform = quote(initializer_lecun_uniform(seed = 1)),
  initializer_ones = quote(initializer_ones()),
  initializer_orthogonal = quote(initializer_orthogonal(gain = 1, seed = 1)),
  initializer_random_normal = quote(initializer_random_normal(mean = 0, stddev = 1, seed = 1)),
  initializer_random_uniform = quote(initializer_random_uniform(minval = -1, maxval = 1, seed = 1)),
  initializer_truncated_normal = quote(initializer_truncated_normal(mean = 0, stddev = 1, seed = 1)),
  initializer_zeros = quote(initializer_zeros()),
  keras_input = quote(keras_input(shape = c(5, 8), batch_size = NULL, dtype = NULL, sparse = NULL,
    batch_shape = NULL, name = NULL, tensor = NULL, optional = FALSE)),
  keras_model = quote(keras_model(inputs = tin1, outputs = tout1, name = "fz_model")),
  keras_model_sequential = quote(keras_model_sequential(input_shape = c(5, 8), name = "fz_seq",
    layers = list(layer_dense(units = 2)))),
  layer_activation = quote(layer_activation(x3, activation = "relu", name = "fz_act", dtype = "float64")),
  layer_add = quote(layer_add(list(x3, x3), name = "fz_add")),
  # merge, reshaping, Lambda and TimeDistributed layers (layer-merge.R, layer-reshape.R, ...)
  layer_average = quote(layer_average(list(x3, x3), name = "fz_average", dtype = "float64")),
  layer_concatenate = quote(layer_concatenate(list(x3, x3), axis = -1L, name = "fz_concatenate")),
  layer_identity = quote(layer_identity(x3, name = "fz_identity")),
  layer_lambda = quote(layer_lambda(x3, f = function(x, k) op_exp(x) * k, output_shape = NULL, mask = NULL,
    arguments = list(k = 2))),
  layer_masking = quote(layer_masking(x3, mask_value = 0)),
  layer_multiply = quote(layer_multiply(list(x3, x3), name = "fz_multiply")),
  layer_permute = quote(layer_permute(x3, dims = c(2, 1))),
  layer_repeat_vector = quote(layer_repeat_vector(x2, n = 3)),
  layer_reshape = quote(layer_reshape(x3, target_shape = c(8, -1))),
  layer_subtract = quote(layer_subtract(list(x3, x3), name = "fz_subtract")),
  layer_time_distributed = quote(layer_time_distributed(x3, layer = layer_dense(units = 2))),
  layer_additive_attention = quote(layer_additive_attention(list(x3, x3, x3), use_scale = TRUE, dropout = 0.1,
    seed = 1, name = "fz_additive_attention")),
  layer_attention = quote(layer_attention(list(x3, x3, x3), use_scale = TRUE, score_mode = "concat", dropout = 0.1,
    seed = 1, dtype = "float64")),
  layer_dense = quote(layer_dense(x3, units = 4, activation = "tanh", use_bias = TRUE,
    kernel_initializer = "glorot_uniform", bias_initializer = "zeros", kernel_regularizer = NULL,
    bias_regularizer = NULL, activity_regularizer = NULL, kernel_constraint = NULL, bias_constraint = NULL)),
  layer_dropout = quote(layer_dropout(x3, rate = 0.5, noise_shape = NULL, seed = 1)),
  layer_einsum_dense = quote(layer_einsum_dense(x3, equation = "abc,cd->abd", output_shape = c(NA, 4),
    activation = NULL, bias_axes = "d", kernel_initializer = "glorot_uniform", bias_initializer = "zeros")),
  layer_embedding = quote(layer_embedding(ids, input_dim = 10, output_dim = 4,
    embeddings_initializer = "uniform", embeddings_regularizer = NULL, embeddings_constraint = NULL,
    mask_zero = FALSE, weights = NULL)),
  layer_flatten = quote(layer_flatten(x3, data_format = NULL)),
  layer_global_average_pooling_1d = quote(layer_global_average_pooling_1d(x3, data_format = "channels_last",
    keepdims = FALSE)),
  layer_group_query_attention = quote(layer_group_query_attention(list(x3, x3), head_dim = 2,
    num_query_heads = 4, num_key_value_heads = 2, dropout = 0, use_bias = TRUE, flash_attention = NULL,
    kernel_initializer = "glorot_uniform", seed = 1)),
  layer_input = quote(layer_input(shape = c(5, 8), batch_size = 2, dtype = "float32", name = NULL)),
  layer_layer_normalization = quote(layer_layer_normalization(x3, axis = -1, epsilon = 1e-3, center = TRUE,
    scale = TRUE, rms_scaling = FALSE, beta_initializer = "zeros", gamma_initializer = "ones")),
  layer_average_pooling_1d = quote(layer_average_pooling_1d(x3, pool_size = 2, strides = 1, padding = "same",
    data_format = "channels_last", name = NULL)),
  layer_max_pooling_1d = quote(layer_max_pooling_1d(x3, pool_size = 2, strides = NULL, padding = "valid",
    data_format = NULL, name = NULL)),
  layer_conv_1d = quote(layer_conv_1d(x3, filters = 4, kernel_size = 3, strides = 1, padding = "causal",
    data_format = NULL, dilation_rate = 2, groups = 2, activation = "relu", use_bias = TRUE,
    kernel_initializer = "glorot_uniform", bias_initializer = "zeros", kernel_regularizer = NULL,
    bias_regularizer = NULL, activity_regularizer = NULL, kernel_constraint = NULL, bias_constraint = NULL)),
  layer_rms_normalization = quote(layer_rms_normalization(x3, axis = -1, epsilon = 1e-6)),
  layer_unit_normalization = quote(layer_unit_normalization(x3, axis = c(2, 3))),
  layer_spatial_dropout_1d = quote(layer_spatial_dropout_1d(x3, rate = 0.5, seed = 1, name = NULL, dtype = NULL)),
  layer_multi_head_attention = quote(layer_multi_head_attention(list(x3, v3), num_heads = 2, key_dim = 2,
    value_dim = NULL, dropout = 0, use_bias = TRUE, output_shape = NULL, attention_axes = NULL,
    flash_attention = NULL, kernel_initializer = "glorot_uniform", seed = 1)),
  learning_rate_schedule_cosine_decay = quote(learning_rate_schedule_cosine_decay(
    initial_learning_rate = 0.1, decay_steps = 10, alpha = 0, name = "cd", warmup_target = NULL,
    warmup_steps = 0)),
  learning_rate_schedule_exponential_decay = quote(learning_rate_schedule_exponential_decay(
    initial_learning_rate = 0.1, decay_steps = 10, decay_rate = 0.9, staircase = FALSE, name = "ed")),
  loss_binary_crossentropy = quote(loss_binary_crossentropy(y01, p01, from_logits = FALSE,
    label_smoothing = 0, axis = -1, reduction = "sum_over_batch_size")),
  loss_categorical_crossentropy = quote(loss_categorical_crossentropy(y01, p01, from_logits = FALSE,
    label_smoothing = 0, axis = -1, reduction = "sum_over_batch_size")),
  loss_mean_absolute_error = quote(loss_mean_absolute_error(y2, y2, reduction = "sum", name = "mae")),
  loss_mean_squared_error = quote(loss_mean_squared_error(y2, y2, reduction = "none", name = "mse")),
  loss_sparse_categorical_crossentropy = quote(loss_sparse_categorical_crossentropy(c(0, 1), p01,
    from_logits = FALSE, ignore_class = NULL, axis = -1)),
  metric_binary_accuracy = quote(metric_binary_accuracy(y01, p01, threshold = 0.5, name = "acc")),
  metric_categorical_accuracy = quote(metric_categorical_accuracy(y01, p01, name = "acc")),
  metric_mean_absolute_error = quote(metric_mean_absolute_error(y2, y2, name = "mae")),
  metric_mean_squared_error = quote(metric_mean_squared_error(y2, y2, name = "mse")),
  metric_sparse_categorical_accuracy = quote(metric_sparse_categorical_accuracy(c(0, 1), p01, name = "acc")),
  multihead_build_info = quote(multihead_build_info()),
  optimizer_adam = quote(optimizer_adam(learning_rate = 0.01, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7,
    amsgrad = FALSE, weight_decay = NULL, clipnorm = NULL, clipvalue = NULL, global_clipnorm = NULL)),
  optimizer_adamw = quote(optimizer_adamw(learning_rate = 0.01, weight_decay = 0.004, beta_1 = 0.9,
    beta_2 = 0.999, epsilon = 1e-7, amsgrad = FALSE)),
  optimizer_rmsprop = quote(optimizer_rmsprop(learning_rate = 0.01, rho = 0.9, momentum = 0, epsilon = 1e-7,
    centered = FALSE)),
  optimizer_sgd = quote(optimizer_sgd(learning_rate = 0.01, momentum = 0, nesterov = FALSE,
    weight_decay = NULL, clipnorm = NULL, clipvalue = NULL, global_clipnorm = NULL)),
  regularizer_l1 = quote(regularizer_l1(l1 = 0.01)),
  regularizer_l1_l2 = quote(regularizer_l1_l2(l1 = 0.01, l2 = 0.01)),
  regularizer_l2 = quote(regularizer_l2(l2 = 0.01)),
  load_model = quote(load_model(model = saved_model_file, compile = TRUE)),
  load_model_weights = quote(load_model_weights(model(), filepath = saved_weights_h5, skip_mismatch = FALSE)),
  save_model = quote(save_model(compiled(), filepath = "fz-model.rds", overwrite = TRUE)),
  register_keras_serializable = quote(register_keras_serializable(object = Layer("FuzzSerializable"),
    name = "FuzzSerializable", package = "fuzz")),
  save_model_weights = quote(save_model_weights(model(), filepath = "fz.weights.h5", overwrite = TRUE)),
  set_buffer_cache_size = quote(set_buffer_cache_size(bytes = 16 * 2^20)),
  set_num_threads = quote(set_num_threads(n = 1)),
  set_weights = quote(set_weights(object = dense_built(), weights = dense_w)),
  shape = quote(shape(2, 3)),
  Layer = quote(Layer(classname = "FuzzLayer", initialize = NULL, call = function(inputs) inputs * 2,
    build = NULL, get_config = NULL, compute_output_shape = NULL, compute_mask = NULL, public = list(),
    private = list(), active = list(), inherit = NULL)),
  new_layer_class = quote(new_layer_class(classname = "FuzzLayer2", call = function(x) op_add(x, 1))),
  layer_global_max_pooling_1d = quote(layer_global_max_pooling_1d(x3, data_format = "channels_last",
    keepdims = FALSE, name = NULL)),
  op_power = quote(op_power(x1 = x3, x2 = 2)),
  op_square = quote(op_square(x = x3)),
  op_sqrt = quote(op_sqrt(x = x3)),
  op_rsqrt = quote(op_rsqrt(x = x3)),
  op_exp = quote(op_exp(x = x3)),
  op_expm1 = quote(op_expm1(x = x3)),
  op_log = quote(op_log(x = x3)),
  op_log1p = quote(op_log1p(x = x3)),
  op_log2 = quote(op_log2(x = x3)),
  op_log10 = quote(op_log10(x = x3)),
  op_abs = quote(op_abs(x = x3)),
  op_absolute = quote(op_absolute(x = x3)),
  op_sign = quote(op_sign(x = x3)),
  op_floor = quote(op_floor(x = x3)),
  op_ceil = quote(op_ceil(x = x3)),
  op_round = quote(op_round(x = x3, decimals = 1)),
  op_trunc = quote(op_trunc(x = x3)),
  op_sin = quote(op_sin(x = x3)),
  op_cos = quote(op_cos(x = x3)),
  op_tan = quote(op_tan(x = x3)),
  op_arcsin = quote(op_arcsin(x = x3)),
  op_arccos = quote(op_arccos(x = x3)),
  op_arctan = quote(op_arctan(x = x3)),
  op_sinh = quote(op_sinh(x = x3)),
  op_cosh = quote(op_cosh(x = x3)),
  op_tanh = quote(op_tanh(x = x3)),
  op_erf = quote(op_erf(x = x3)),
  op_relu = quote(op_relu(x = x3)),
  op_relu6 = quote(op_relu6(x = x3)),
  op_leaky_relu = quote(op_leaky_relu(x = x3, negative_slope = 0.2)),
  op_elu = quote(op_elu(x = x3, alpha = 1)),
  op_selu = quote(op_selu(x = x3)),
  op_gelu = quote(op_gelu(x = x3, approximate = TRUE)),
  op_sigmoid = quote(op_sigmoid(x = x3)),
  op_silu = quote(op_silu(x = x3)),
  op_swish = quote(op_swish(x = x3)),
  op_softplus = quote(op_softplus(x = x3)),
  op_softsign = quote(op_softsign(x = x3)),
  op_maximum = quote(op_maximum(x1 = x3, x2 = 2)),
  op_pmax = quote(op_pmax(x1 = x3, x2 = 2)),
  op_minimum = quote(op_minimum(x1 = x3, x2 = 2)),
  op_pmin = quote(op_pmin(x1 = x3, x2 = 2)),
  op_clip = quote(op_clip(x = x3, x_min = -1, x_max = 1)),
  op_mod = quote(op_mod(x1 = x3, x2 = 2)),
  op_floor_divide = quote(op_floor_divide(x1 = x3, x2 = 2)),
  op_equal = quote(op_equal(x1 = x3, x2 = 2)),
  op_not_equal = quote(op_not_equal(x1 = x3, x2 = 2)),
  op_less = quote(op_less(x1 = x3, x2 = 2)),
  op_less_equal = quote(op_less_equal(x1 = x3, x2 = 2)),
  op_greater = quote(op_greater(x1 = x3, x2 = 2)),
  op_greater_equal = quote(op_greater_equal(x1 = x3, x2 = 2)),
  op_logical_and = quote(op_logical_and(x1 = x3 > 0, x2 = x3 < 1)),
  op_logical_or = quote(op_logical_or(x1 = x3 > 0, x2 = x3 < 1)),
  op_logical_xor = quote(op_logical_xor(x1 = x3 > 0, x2 = x3 < 1)),
  op_logical_not = quote(op_logical_not(x = x3)),
  op_isnan = quote(op_isnan(x = x3)),
  op_isfinite = quote(op_isfinite(x = x3)),
  op_isinf = quote(op_isinf(x = x3)),
  op_where = quote(op_where(condition = x3 > 0, x1 = x3, x2 = 0)),
  op_sum = quote(op_sum(x3, axis = c(1, 3), keepdims = FALSE)),
  op_prod = quote(op_prod(x3, axis = 2, keepdims = TRUE, dtype = NULL)),
  op_mean = quote(op_mean(x3, axis = -1, keepdims = FALSE)),
  op_max = quote(op_max(x3, axis = 1, keepdims = FALSE, initial = NULL)),
  op_min = quote(op_min(x3, axis = NULL, keepdims = TRUE, initial = 0)),
  op_var = quote(op_var(x3, axis = 2, keepdims = FALSE)),
  op_std = quote(op_std(x3, axis = c(2, 3), keepdims = FALSE)),
  op_any = quote(op_any(x3, axis = 1, keepdims = FALSE)),
  op_all = quote(op_all(x3, axis = NULL, keepdims = FALSE)),
  op_count_nonzero = quote(op_count_nonzero(x3, axis = 2)),
  op_argmax = quote(op_argmax(x3, axis = -1, keepdims = FALSE, zero_indexed = FALSE)),
  op_argmin = quote(op_argmin(x3, axis = NULL, keepdims = TRUE, zero_indexed = TRUE)),
  op_cumsum = quote(op_cumsum(x3, axis = 2, dtype = NULL)),
  op_cumprod = quote(op_cumprod(x3, axis = NULL, dtype = "float64")),
  op_softmax = quote(op_softmax(x3, axis = -1)),
  op_log_softmax = quote(op_log_softmax(x3, axis = c(1, 2))),
  op_logsumexp = quote(op_logsumexp(x3, axis = 3, keepdims = TRUE)),
  op_norm = quote(op_norm(x3, ord = 2, axis = c(2, 3), keepdims = FALSE)),
  random_uniform = quote(random_uniform(shape = c(2, 3), minval = 0, maxval = 1, dtype = NULL, seed = 1)),
  random_normal = quote(random_normal(shape = c(2, 3), mean = 0, stddev = 1, dtype = NULL, seed = 1)),
  random_truncated_normal = quote(random_truncated_normal(shape = c(2, 3), mean = 0, stddev = 1, dtype = NULL, seed = 1)),
  random_integer = quote(random_integer(shape = c(2, 3), minval = 0, maxval = 5, dtype = "int32", seed = 1)),
  random_gamma = quote(random_gamma(shape = c(2, 3), alpha = 2, dtype = NULL, seed = 1)),
  random_beta = quote(random_beta(shape = c(2, 3), alpha = 2, beta = 3, dtype = NULL, seed = 1)),
  random_binomial = quote(random_binomial(shape = c(2, 3), counts = 5, probabilities = 0.5, dtype = NULL, seed = 1)),
  random_categorical = quote(random_categorical(logits = x2, num_samples = 4, dtype = "int32", seed = 1, zero_indexed = FALSE)),
  random_shuffle = quote(random_shuffle(x = x3, axis = 1, seed = 1)),
  random_dropout = quote(random_dropout(inputs = x3, rate = 0.5, noise_shape = NULL, seed = 1)),
  random_seed_generator = quote(random_seed_generator(seed = 1, name = NULL)),
  set_random_seed = quote(set_random_seed(seed = 1)),
  use_backend = quote(use_backend(backend = "jax", gpu = NA)),
  py_require = quote(py_require(packages = "keras", python_version = NULL, exclude_newer = NULL, action = "add")),
  config_floatx = quote(config_floatx()),
  config_set_floatx = quote(config_set_floatx(value = "float32")),
  config_dtype_policy = quote(config_dtype_policy()),
  config_set_dtype_policy = quote(config_set_dtype_policy(policy = "float32")),
  Callback = quote(Callback("FzCallback", on_epoch_begin = NULL, on_epoch_end = function(epoch, logs = NULL) NULL,
    on_train_begin = NULL, on_train_end = NULL, on_train_batch_begin = NULL, on_train_batch_end = NULL,
    public = list(x = 1), private = list(y = 2), inherit = NULL, parent_env = globalenv())),
  new_callback_class = quote(new_callback_class("FzCallback2", on_epoch_end = function(epoch, logs = NULL) NULL,
    public = list(x = 1), private = list(y = 2), inherit = NULL, parent_env = globalenv())),
  Metric = quote(Metric("FzMetric", initialize = NULL, update_state = function(y_true, y_pred, sample_weight = NULL) NULL,
    result = function() 1, public = list(), private = list(), inherit = NULL, parent_env = globalenv())),
  new_metric_class = quote(new_metric_class("FzMetric2", update_state = function(y_true, y_pred, sample_weight = NULL) NULL,
    result = function() 1, public = list(), private = list(), inherit = NULL, parent_env = globalenv())),
  Loss = quote(Loss("FzLoss", call = function(y_true, y_pred) y_pred - y_true, public = list(), private = list(),
    inherit = NULL, parent_env = globalenv())),
  new_loss_class = quote(new_loss_class("FzLoss2", call = function(y_true, y_pred) y_pred - y_true, public = list(),
    private = list(), inherit = NULL, parent_env = globalenv())),
  LearningRateSchedule = quote(LearningRateSchedule("FzSchedule", call = function(step) 0.1, initialize = NULL,
    get_config = NULL, public = list(), private = list(), inherit = NULL, parent_env = globalenv())),
  new_learning_rate_schedule_class = quote(new_learning_rate_schedule_class("FzSchedule2", call = function(step) 0.1,
    initialize = NULL, get_config = NULL, public = list(), private = list(), inherit = NULL,
    parent_env = globalenv())),
  active_property = quote(active_property(function(value) 1)),
  newaxis = quote(op_subset(x3, newaxis, 1)),
  op_one_hot = quote(op_one_hot(array(c(0L, 1L, 2L, 3L), c(2, 2)), num_classes = 10, axis = -1, dtype = NULL, sparse = FALSE, zero_indexed = TRUE)),
  op_slice = quote(op_slice(x3, start_indices = c(1, 2, 3), shape = c(2, 2, 2))),
  op_slice_update = quote(op_slice_update(x3, start_indices = c(1, 2, 3), updates = array(0, c(1, 2, 2)))),
  op_subset = quote(op_subset(x3, 1, -1, 2:3, drop = TRUE)),
  op_take = quote(op_take(x3, indices = c(1, 2), axis = 2, zero_indexed = FALSE)),
  op_take_along_axis = quote(op_take_along_axis(x3, indices = array(1, c(2, 1, 8)), axis = 2, zero_indexed = FALSE)),
  op_arange = quote(op_arange(start = 1, end = 5, step = 1, dtype = "float32", include_end = TRUE)),
  op_cast = quote(op_cast(x3, dtype = "int32")),
  op_concatenate = quote(op_concatenate(list(x3, x3), axis = 2)),
  op_convert_to_array = quote(op_convert_to_array(x3)),
  op_convert_to_numpy = quote(op_convert_to_numpy(x3)),
  op_convert_to_tensor = quote(op_convert_to_tensor(x3, dtype = "float32", sparse = NULL, ragged = NULL)),
  op_expand_dims = quote(op_expand_dims(x3, axis = 2)),
  op_eye = quote(op_eye(N = 3, M = 4, k = 1, dtype = "float32")),
  op_full = quote(op_full(shape = c(2, 3), fill_value = 1.5, dtype = "float32")),
  op_full_like = quote(op_full_like(x3, fill_value = 2, dtype = NULL)),
  op_identity = quote(op_identity(n = 3, dtype = NULL)),
  op_ones = quote(op_ones(shape = c(2, 3), dtype = NULL)),
  op_ones_like = quote(op_ones_like(x3, dtype = NULL)),
  op_repeat = quote(op_repeat(x3, repeats = 2, axis = 2)),
  op_reshape = quote(op_reshape(x3, newshape = c(10, -1))),
  op_shape = quote(op_shape(x3)),
  op_split = quote(op_split(x3, indices_or_sections = c(2, 4), axis = 2)),
  op_squeeze = quote(op_squeeze(array(1, c(2, 1, 8)), axis = 2)),
  op_stack = quote(op_stack(list(x3, x3), axis = 1)),
  op_tile = quote(op_tile(x3, repeats = c(1, 2, 1))),
  op_transpose = quote(op_transpose(x3, axes = c(2, 1, 3))),
  op_tril = quote(op_tril(x3, k = 0)),
  op_triu = quote(op_triu(x3, k = 1)),
  op_zeros = quote(op_zeros(shape = c(2, 3), dtype = "int32")),
  op_zeros_like = quote(op_zeros_like(x3, dtype = "bool")),
  `%*%` = method_call(`%*%`(tin(), t(y8))),
  op_dot = quote(op_dot(x1 = x3, x2 = t(y8))),
  op_dot_product_attention = quote(op_dot_product_attention(query = x4, key = x4, value = x4, bias = NULL,
    mask = NULL, scale = NULL, is_causal = FALSE, flash_attention = NULL, attn_logits_soft_cap = NULL)),
  op_einsum = quote(op_einsum(subscripts = "btd,de->bte", x3, t(y8))),
  op_matmul = quote(op_matmul(x1 = x3, x2 = t(y8))),
  op_tensordot = quote(op_tensordot(x1 = x3, x2 = t(y8), axes = 2L)),
  op_add = quote(op_add(x1 = x2, x2 = 1)),
  op_divide = quote(op_divide(x1 = x2, x2 = 2)),
  op_multiply = quote(op_multiply(x1 = x2, x2 = x2)),
  op_negative = quote(op_negative(x = x2)),
  op_subtract = quote(op_subtract(x1 = x2, x2 = 0.5)),
  # metrics, losses and optimizers of the training toolbox
  metric_auc = quote(metric_auc(num_thresholds = 5L, curve = "ROC", summation_method = "interpolation",
    name = "auc", dtype = NULL, thresholds = NULL, multi_label = TRUE, num_labels = 2, label_weights = c(1, 2),
    from_logits = FALSE)),
  metric_precision = quote(metric_precision(thresholds = c(0.3, 0.6), top_k = 1, class_id = 0, name = "p",
    dtype = NULL)),
  metric_recall = quote(metric_recall(thresholds = 0.5, top_k = NULL, class_id = 1, name = "r", dtype = NULL)),
  metric_top_k_categorical_accuracy = quote(metric_top_k_categorical_accuracy(y01, p01, k = 1, name = "top")),
  metric_sparse_top_k_categorical_accuracy = quote(metric_sparse_top_k_categorical_accuracy(c(0, 1), p01, k = 1,
    name = "stop", dtype = NULL, from_sorted_ids = FALSE)),
  loss_huber = quote(loss_huber(y2, y2, delta = 1, reduction = "sum_over_batch_size", name = "h")),
  loss_kl_divergence = quote(loss_kl_divergence(y01, p01, reduction = "sum", name = "kl")),
  loss_categorical_focal_crossentropy = quote(loss_categorical_focal_crossentropy(y01, p01, alpha = 0.25,
    gamma = 2, from_logits = FALSE, label_smoothing = 0, axis = -1)),
  optimizer_adagrad = quote(optimizer_adagrad(learning_rate = 0.01, initial_accumulator_value = 0.1,
    epsilon = 1e-7, weight_decay = NULL, clipnorm = NULL, clipvalue = NULL, global_clipnorm = NULL,
    use_ema = FALSE, name = "adagrad")),
  optimizer_nadam = quote(optimizer_nadam(learning_rate = 0.01, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7,
    weight_decay = 0.01, clipnorm = 1, ema_momentum = 0.99, name = "nadam")),
  optimizer_lion = quote(optimizer_lion(learning_rate = 0.01, beta_1 = 0.9, beta_2 = 0.99, weight_decay = NULL,
    global_clipnorm = 1, loss_scale_factor = NULL, gradient_accumulation_steps = NULL, name = "lion")),
  as_attention_scores = quote(as_attention_scores(x = array(0.25, c(1, 2, 2, 2)))),
  # implicit masks of eager arrays (R/keras-mask.R)
  get_keras_mask = quote(get_keras_mask(x = set_keras_mask(x3, qm))),
  set_keras_mask = quote(set_keras_mask(x = x3, mask = qm)),
  # text vectorization and lookups (R/layer-text-vectorization.R, R/layer-lookup.R)
  layer_text_vectorization = quote(layer_text_vectorization(c("The cat sat.", "a dog"), max_tokens = NULL,
    standardize = "lower_and_strip_punctuation", split = "whitespace", ngrams = 2, output_mode = "int",
    output_sequence_length = 4, pad_to_max_tokens = FALSE, vocabulary = c("cat", "dog", "the"),
    idf_weights = NULL, sparse = FALSE, ragged = FALSE, encoding = "utf-8", name = NULL)),
  layer_string_lookup = quote(layer_string_lookup(rbind(c("a", "b"), c("z", "")), max_tokens = NULL,
    num_oov_indices = 1, mask_token = "", oov_token = "[UNK]", vocabulary = c("a", "b"), idf_weights = NULL,
    invert = FALSE, output_mode = "int", pad_to_max_tokens = FALSE, sparse = FALSE, encoding = "utf-8")),
  layer_integer_lookup = quote(layer_integer_lookup(c(3, 7, 9), max_tokens = 5, num_oov_indices = 2,
    mask_token = 0, oov_token = -1, vocabulary = c(3, 7), vocabulary_dtype = "int64", idf_weights = NULL,
    invert = FALSE, output_mode = "count", sparse = FALSE, pad_to_max_tokens = TRUE)),
  adapt = quote(adapt(layer_text_vectorization(output_mode = "tf_idf"), data = c("a b", "b c c"),
    batch_size = 1, steps = NULL)),
  get_vocabulary = quote(get_vocabulary(layer_string_lookup(vocabulary = c("x", "y")),
    include_special_tokens = TRUE)),
  set_vocabulary = quote(set_vocabulary(layer_text_vectorization(output_mode = "tf_idf"), vocabulary = c("a", "b"),
    idf_weights = c(0.5, 1)))
)

# Callable objects and methods that are not exports: layer calls with bad
# inputs, masks and training flags; model methods; `$` methods with bad arguments.
fuzz_callables <- list(
  dense_call = quote(dense_built()(x3, training = FALSE)),
  save_keras_archive = quote(save_model(compiled(), filepath = "fz-model.keras", overwrite = TRUE)),
  load_keras_archive = quote(load_model(model = saved_keras_file, custom_objects = NULL, compile = TRUE,
    safe_mode = TRUE)),
  save_weights_own_format = quote(save_model_weights(model(), filepath = "fz-weights.rds", overwrite = TRUE)),
  load_weights_own_format = quote(load_model_weights(model(), filepath = saved_weights_rds, skip_mismatch = TRUE)),
  mha_call = quote(mha_built()(query = x3, value = v3, key = k3, attention_mask = am, query_mask = qm,
    value_mask = vm, key_mask = vm, return_attention_scores = FALSE, training = FALSE,
    use_causal_mask = FALSE)),
  mha_fresh_call = quote(mha()(x3, v3, k3, attention_mask = am, training = TRUE)),
  mha_materialised_call = quote(layer_multi_head_attention(num_heads = 2, key_dim = 2, dropout = 0.1,
    flash_attention = FALSE, dtype = "float64", seed = 3)(x3, v3, attention_mask = am,
    return_attention_scores = TRUE, training = TRUE)),
  mha_axes_call = quote(layer_multi_head_attention(num_heads = 2, key_dim = 2, attention_axes = c(1, 2))(x4, x4,
    attention_mask = array(TRUE, c(2, 5, 2, 5, 2)))),
  mha_gate_window_call = quote(layer_multi_head_attention(num_heads = 2, key_dim = 2, use_gate = TRUE,
    sliding_window = 2)(x3, x3, use_causal_mask = TRUE, query_mask = qm)),
  mha_backprop = quote(backprop(mha_built(), x3, v3, k3, attention_mask = am, training = FALSE, grad_output = g3)),
  embedding_call = quote(emb_built()(ids)),
  einsum_call = quote(layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 4))(x3)),
  layer_norm_call = quote(layer_layer_normalization()(x3, training = FALSE)),
  dropout_call = quote(layer_dropout(rate = 0.3, seed = 2)(x3, training = TRUE)),
  pooling_call = quote(layer_global_average_pooling_1d()(x3, mask = qm)),
  flatten_call = quote(layer_flatten()(x3)),
  add_call = quote(layer_add()(list(x3, x3))),
  # merge, reshaping, Lambda and TimeDistributed layers: calls with masks, backprop()
  multiply_masked_call = quote(layer_multiply()(list(x3, x3), mask = list(qm, qm))),
  concatenate_masked_call = quote(layer_concatenate(axis = 2)(list(x3, x3), mask = list(qm, NULL))),
  concatenate_backprop = quote(backprop(layer_concatenate(), list(x3, x3), grad_output = array(1, c(2, 5, 16)))),
  subtract_backprop = quote(backprop(layer_subtract(), list(x3, x3), grad_output = g3)),
  masking_call = quote(layer_masking(mask_value = 0)(x3, mask = qm)),
  lambda_masked_call = quote(layer_lambda(f = function(x, mask) x * 2, mask = function(inputs, mask) mask)(x3,
    mask = qm, training = TRUE)),
  lambda_backprop = quote(backprop(layer_lambda(f = function(x) op_tanh(x)), x3, grad_output = g3)),
  reshape_backprop = quote(backprop(layer_reshape(target_shape = c(8, 5)), x3, grad_output = array(1, c(2, 8, 5)))),
  time_distributed_backprop = quote(backprop(layer_time_distributed(layer = layer_dense(units = 8)), x3,
    mask = qm, grad_output = g3)),
  activation_call = quote(layer_activation(activation = "softmax")(x3)),
  dense_build = quote(dense()$build(input_shape = c(2, 8))),
  dense_set_weights = quote(dense_built()$set_weights(weights = dense_w)),
  mha_build = quote(mha()$build(query_shape = c(2, 5, 8), value_shape = c(2, 3, 6), key_shape = c(2, 3, 4))),
  mha_output_shape = quote(mha()$compute_output_shape(query_shape = c(NA, 5, 8), value_shape = c(NA, 3, 6))),
  model_call = quote(model()(x3)),
  model_predict = quote(predict(model(), x = x3, batch_size = 2, verbose = 0)),
  model_backprop = quote(backprop(model(), x3, training = FALSE, grad_output = y2)),
  model_set_weights = quote(model()$set_weights(weights = model_w)),
  model_get_layer = quote(model()$get_layer(name = "fz_dense")),
  seq_add = quote(seqm()$add(layer_dense(units = 2))),
  compile_custom = quote(compile(model(), optimizer = optimizer_adam(0.01), loss = loss_mean_squared_error(),
    metrics = list(metric_mean_absolute_error()))),
  symbolic_dense = quote(layer_dense(tin(), units = 3)),
  symbolic_mha = quote(layer_multi_head_attention(list(tin(), tin()), num_heads = 2, key_dim = 2)),
  layer_norm_backprop = quote(backprop(layer_layer_normalization(), x3, training = FALSE, grad_output = g3)),
  dropout_backprop = quote(backprop(layer_dropout(rate = 0.5, seed = 1), x3, training = TRUE, grad_output = g3)),
  embedding_backprop = quote(backprop(emb_built(), ids, grad_output = array(1, c(2, 3, 4)))),
  einsum_backprop = quote(backprop(layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 4)), x3,
    grad_output = array(1, c(2, 5, 4)))),
  pooling_backprop = quote(backprop(layer_global_average_pooling_1d(), x3, mask = qm, grad_output = y8)),
  add_backprop = quote(backprop(layer_add(), list(x3, x3), grad_output = g3)),
  fit_callbacks = quote(fit(compiled(), x3, y2, epochs = 2, verbose = 0, validation_data = list(x3, y2),
    callbacks = list(callback_early_stopping(monitor = "val_loss", patience = 1, min_delta = 1e300),
                     callback_lambda(on_epoch_end = function(epoch, logs) NULL)))),
  fit_sequential = quote(fit(seq_compiled(), x = x2, y = y2, batch_size = 1, epochs = 1, verbose = 0,
    validation_split = 0.5, sample_weight = c(1, 2), callbacks = stop_at_2)),
  # fit()'s other arguments, data forms and callbacks in a run (h/train)
  fit_arguments = quote(fit(compiled(), x = x3, y = y2, batch_size = 1, epochs = 2, verbose = 0,
    callbacks = stop_at_2, validation_data = list(x3, y2), shuffle = "batch", class_weight = NULL,
    steps_per_epoch = 1, validation_steps = 1, validation_batch_size = 1, validation_freq = 1)),
  fit_class_weight = quote(fit(seq_compiled(), x = x2, y = rbind(c(1, 0, 0), c(0, 0, 1)), batch_size = 2, epochs = 1, verbose = 0,
    class_weight = c("0" = 1, "2" = 3), callbacks = stop_at_2)),
  fit_generator = quote(fit(compiled(), x = batch_gen(), steps_per_epoch = 2, epochs = 1, verbose = 0,
    validation_data = batch_gen(), validation_steps = 1, callbacks = stop_at_2)),
  fit_new_callbacks = quote(fit(compiled(), x3, y2, epochs = 2, verbose = 0, validation_data = list(x3, y2),
    callbacks = list(callback_reduce_lr_on_plateau(monitor = "val_loss", patience = 0),
                     callback_learning_rate_scheduler(function(epoch, lr) lr / 2),
                     callback_csv_logger("log.csv"), callback_terminate_on_nan(),
                     callback_model_checkpoint("m-{epoch}.rds", save_best_only = TRUE),
                     callback_backup_and_restore("backup"), callback_early_stopping("loss", patience = 0,
                                                                                     min_delta = 1e300)))),
  evaluate_steps = quote(evaluate(compiled(), x = x3, y = y2, batch_size = 1, steps = 1, verbose = 0)),
  predict_steps = quote(predict(model(), x = x3, batch_size = 1, verbose = 0, steps = 1)),
  predict_data_frame = quote(predict(seqm_built(), x = df8, batch_size = 1, verbose = 0)),
  # end of h/train's block
  evaluate_metrics = quote(evaluate(compile(model(), optimizer = "adam", loss = "mse", metrics = c("mae", "mse"),
    weighted_metrics = list("mae")), x3, y2, sample_weight = c(1, 1), verbose = 0)),
  loss_object_call = quote(loss_mean_squared_error()(y2, y2, sample_weight = c(1, 2))),
  loss_object_bce = quote(loss_binary_crossentropy(from_logits = TRUE, label_smoothing = 0.1)(y01, p01)),
  schedule_call = quote(learning_rate_schedule_cosine_decay(0.1, 10)(step = 3)),
  summary_model = method_call(summary(model())),
  print_layer = method_call(print(mha_built())),
  format_model = method_call(format(model())),
  history_df = method_call(as.data.frame(history)),
  history_plot = method_call(plot(history, y = NULL, metrics = "loss", method = "base", smooth = FALSE)),
  masked_model = quote(masked_model()(ids)),
  seq_predict = quote(predict(seqm_built(), x2, batch_size = 1, verbose = 0)),
  symbolic_plus = quote(plus_tensor(e = tin())),
  symbolic_times = quote(times_tensor(e = 2)),
  # metrics, losses and optimizers of the training toolbox, updated and used in fit()
  auc_update = quote(multihead:::metric_update(metric_auc(num_thresholds = 5, multi_label = TRUE), y01, p01,
    sample_weight = c(1, 2))),
  precision_update = quote(multihead:::metric_update(metric_precision(top_k = 1, class_id = 1), y01, p01,
    sample_weight = 2)),
  focal_object_call = quote(loss_categorical_focal_crossentropy(from_logits = TRUE)(y01, p01, sample_weight = c(1, 2))),
  fit_toolbox = quote(fit(compile(model(), optimizer = optimizer_nadam(0.01), loss = "huber",
    metrics = list("auc", metric_recall(thresholds = 0.2), "precision")), x = x3, y = y2, batch_size = 1,
    epochs = 1, verbose = 0, callbacks = stop_at_2)),
  optimizer_lion_apply = quote(multihead:::optimizer_apply(optimizer_lion(0.1), list(w = c(1, 2)), list(w = c(0.5, -1)))),
  recall_update_state = quote(metric_recall(thresholds = c(0.2, 0.7))$update_state(y01, p01, sample_weight = NULL))
)

# (Every fit() call has a callback that stops it after an epoch or two, so
# that a fuzzed epochs = .Machine$integer.max ends.)

# Fixtures the fuzz calls see: values, and functions that make fresh layers
# and models. Made once; each call runs in a new child environment, so
# mutated calls cannot leak state into each other.
fuzz_fixtures <- function() {
  if (!is.null(fuzz_cache$env)) return(new.env(parent = fuzz_cache$env))
  env <- new.env(parent = environment(fuzz_fixtures))
  fuzz_cache$env <- env
  local(envir = env, {
    set.seed(1)
    x3 <- array(rnorm(2 * 5 * 8), c(2, 5, 8)); v3 <- array(rnorm(2 * 3 * 6), c(2, 3, 6))
    k3 <- array(rnorm(2 * 3 * 4), c(2, 3, 4)); x2 <- matrix(rnorm(16), 2, 8)
    x4 <- array(rnorm(2 * 5 * 2 * 6), c(2, 5, 2, 6))
    g2 <- matrix(1, 2, 4); g3 <- array(1, c(2, 5, 8)); y2 <- matrix(rnorm(6), 2, 3)
    y01 <- rbind(c(1, 0), c(0, 1)); p01 <- rbind(c(0.8, 0.2), c(0.3, 0.7))
    ids <- matrix(c(1, 2, 3, 0, 9, 4), 2)
    am <- array(TRUE, c(2, 5, 3)); qm <- array(TRUE, c(2, 5)); vm <- array(TRUE, c(2, 3))
    dense <- function() layer_dense(units = 4, name = "fz_dense")
    dense_built <- function() { d <- dense(); d$build(c(2, 8)); d }
    dense_w <- list(matrix(0.1, 8, 4), rep(0, 4)); dense_config <- get_config(dense())
    mha <- function() layer_multi_head_attention(num_heads = 2, key_dim = 2)
    mha_built <- function() { m <- mha(); m$build(c(2, 5, 8), c(2, 3, 6), c(2, 3, 4)); m }
    emb_built <- function() { e <- layer_embedding(input_dim = 10, output_dim = 4); e$build(c(2, 3)); e }
    tin <- function() keras_input(shape = c(5, 8))
    tin1 <- tin(); tout1 <- layer_dense(layer_global_average_pooling_1d(tin1), 3)
    model <- function() {
      i <- keras_input(shape = c(5, 8))
      keras_model(i, layer_dense(layer_global_average_pooling_1d(i), 3, name = "fz_dense"))
    }
    model_w <- get_weights(model())
    saved_model_file <- tempfile("fz-model-", fileext = ".rds")
    save_model(compile(model(), optimizer = "adam", loss = "mse"), saved_model_file)
    saved_keras_file <- tempfile("fz-model-", fileext = ".keras")
    save_model(compile(model(), optimizer = "adam", loss = "mse"), saved_keras_file)
    saved_weights_h5 <- tempfile("fz-", fileext = ".weights.h5")
    save_model_weights(model(), saved_weights_h5)
    saved_weights_rds <- tempfile("fz-weights-", fileext = ".rds")
    save_model_weights(model(), saved_weights_rds)
    compiled <- function() compile(model(), optimizer = "sgd", loss = "mse")
    seqm <- function() keras_model_sequential(input_shape = 8)
    seq_compiled <- function() compile(keras_model_sequential(input_shape = 8) |> layer_dense(3),
                                       optimizer = "sgd", loss = "mse")
    seqm_built <- function() keras_model_sequential(input_shape = 8) |> layer_dense(3)
    y8 <- matrix(1, 2, 8)
    batch_gen <- function() { k <- 0; function() { k <<- k + 1; if (k <= 3) list(x3, y2) } }   # 3 batches
    df8 <- as.data.frame(x2)
    stop_at_2 <- list(callback_early_stopping(monitor = "loss", min_delta = 1e300, patience = 0))
    history <- fit(compiled(), x3, y2, epochs = 2, verbose = 0)
    masked_model <- function() {
      i <- keras_input(shape = 3)
      e <- layer_embedding(i, input_dim = 10, output_dim = 4, mask_zero = TRUE)
      keras_model(i, layer_dense(layer_global_average_pooling_1d(e), 2))
    }
    plus_tensor <- function(e) tin() + e
    times_tensor <- function(e) e * tin()
    loss_fn <- function(y_true, y_pred) mean((y_true - y_pred)^2)
    metric_fn <- function(y_true, y_pred) mean(abs(y_true - y_pred))
  })
  new.env(parent = env)
}
fuzz_cache <- new.env()

# Bad values, by name (the name labels a failing call). Huge shapes are
# products that overflow 32-bit integers and would need terabytes.
fuzz_values <- function() {
  x <- array(1, c(2, 5, 8))
  na_in <- function(v) { x[3] <- v; x }
  list(
    `NULL` = NULL, `NA` = NA, `NA_real_` = NA_real_, `NA_integer_` = NA_integer_, `NA_character_` = NA_character_,
    `NaN` = NaN, `Inf` = Inf, `-Inf` = -Inf, `0` = 0, `-1` = -1, `0.5` = 0.5, `1.5` = 1.5, `-2.5` = -2.5,
    `1e10` = 1e10, int_max = .Machine$integer.max, `2^31` = 2^31, `2^53` = 2^53, `-2^31` = -2^31,
    `1e308` = 1e308, `"a"` = "a", `""` = "", `"relu"` = "relu", `c("a", "b")` = c("a", "b"),
    `character(0)` = character(0), `TRUE` = TRUE, `FALSE` = FALSE, `logical(0)` = logical(0),
    `c(TRUE, NA)` = c(TRUE, NA), complex = 1 + 0i, raw = as.raw(1), factor = factor("a"),
    factor2 = factor(c("x", "y")), `list()` = list(), `list(1)` = list(1), `list(a, b)` = list(a = 1, b = "x"),
    `list(NULL)` = list(NULL), closure = function(x) x, builtin = sum, env = new.env(), symbol = as.name("a"),
    expression = expression(1), call = quote(f(1)), `numeric(0)` = numeric(0), `integer(0)` = integer(0),
    `1:3` = 1:3, `c(1, NA)` = c(1, NA), `c(2, 3, 4)` = c(2, 3, 4), `matrix(1, 2, 2)` = matrix(1, 2, 2),
    char_matrix = matrix("a", 2, 2), empty_batch = array(0, c(0, 5, 8)), empty_steps = array(1, c(2, 0, 8)),
    empty_features = array(1, c(2, 5, 0)), all_nan = array(NaN, c(2, 5, 8)), one_na = na_in(NA),
    one_nan = na_in(NaN), one_inf = na_in(Inf), one_neg_inf = na_in(-Inf), rank4 = array(1, c(2, 5, 8, 1)),
    rank5_ones = array(1, c(1, 1, 1, 1, 1)), rank1 = array(1, 8), mask_2x5 = array(TRUE, c(2, 5)),
    mask_5x2 = array(TRUE, c(5, 2)), mask_wrong = array(TRUE, c(2, 3, 5)), int_ids = array(1L, c(2, 5)),
    complex_array = array(1 + 0i, c(2, 5, 8)), logical_array = array(TRUE, c(2, 5, 8)),
    transposed = array(1, c(8, 5, 2)), data_frame = data.frame(a = 1), classed = structure(1, class = "foo"),
    fake_layer = structure(function(...) NULL, class = c("Dense", "multihead_layer", "function")),
    fake_model = structure(list(), class = c("multihead_model", "multihead_layer")),
    fake_tensor = structure(list(), class = "multihead_tensor"),
    huge_shape = c(2^30, 2^30), huge_shape3 = c(1e5, 1e5, 1e5), huge_shape_na = c(NA, 46341, 46341),
    int_max_shape = c(.Machine$integer.max, 2)
  )
}

# An array of random rank (1 to 5) and sizes (0 to 5, mostly the fixtures'
# sizes 2, 3, 5 and 8), of a random type, sometimes holding NA, NaN or Inf:
# shapes that almost fit explore the shape checks.
random_array <- function() {
  d <- sample(c(0, 1, 2, 2, 3, 3, 5, 5, 8, 8), sample(5L, 1L), replace = TRUE)
  type <- sample(c("double", "double", "integer", "logical"), 1L)
  x <- switch(type, double = rnorm(prod(d)), integer = sample(0:9, prod(d), replace = TRUE),
              logical = rnorm(prod(d)) > 0)
  special <- if (length(x) && runif(1) < 0.2) sample(list(NA, NaN, Inf), 1L)[[1L]]
  if (!is.null(special)) x[sample(length(x), 1L)] <- special
  list(label = sprintf("%s array (%s)%s", type, paste(d, collapse = ", "),
                       if (is.null(special)) "" else paste(" with", format(special))),
       value = list(array(x, d)))
}

# Values only the fixtures can build, and multihead's own objects in the
# wrong place (a regularizer as an initializer, a loss as an optimizer, ...).
fuzz_context_values <- list(
  dense = quote(dense()), model = quote(model()), tensor = quote(tin()), optimizer = quote(optimizer_sgd()),
  loss_fn = quote(loss_fn), loss = quote(loss_mean_squared_error()), metric = quote(metric_mean_squared_error()),
  callback = quote(callback_lambda()), initializer = quote(initializer_zeros()),
  regularizer = quote(regularizer_l2()), constraint = quote(constraint_nonneg()),
  schedule = quote(learning_rate_schedule_cosine_decay(0.1, 10)), history = quote(history), x3 = quote(x3))

# Errors R itself raises while matching arguments (naming the argument) or
# dispatching (generics' compile(), fit() and predict() on a non-model; a
# tensor plus a factor or data frame, whose Ops methods R finds incompatible
# and never calls) are acceptable; anything else must be one of ours.
acceptable_error <- function(e) {
  inherits(e, "multihead_error") ||
    grepl(paste0("^unused argument|argument \"[^\"]+\" is missing, with no default|",
                 "^no applicable method for '(compile|fit|predict)'|^non-numeric argument to binary operator"),
          conditionMessage(e))
}

# Runs `call` in a fresh fixture environment with a time limit. Returns
# list(status = "ok" | "error" | "bad", message).
fuzz_run <- function(call, seconds = 10) {
  env <- fuzz_fixtures()
  setTimeLimit(elapsed = seconds, transient = TRUE)
  on.exit(setTimeLimit(elapsed = Inf), add = TRUE)
  warn <- NULL
  res <- tryCatch(withCallingHandlers({
    utils::capture.output(value <- eval(call, env))
    "ok"
  }, warning = function(w) {
    warn <<- c(warn, conditionMessage(w))
    invokeRestart("muffleWarning")
  }), error = function(e) e)
  setTimeLimit(elapsed = Inf)
  if (identical(res, "ok")) {
    # ours name an argument; plot()'s `...` go to base graphics, which warns itself
    if (!all(grepl("multihead|`|is not a graphical parameter", warn))) {
      return(list(status = "bad", message = paste("warning:", warn[1])))
    }
    return(list(status = "ok", message = ""))
  }
  msg <- conditionMessage(res)
  if (grepl("reached elapsed time limit", msg)) return(list(status = "bad", message = paste("hang:", msg)))
  list(status = if (acceptable_error(res)) "error" else "bad",
       message = paste0("[", class(res)[1], "] ", msg))
}

# A random mutation of `call`: replace one or two arguments by bad values,
# drop an argument, or add an unknown or extra positional one.
fuzz_mutate <- function(call, values) {
  args <- as.list(call)[-1L]
  n <- length(args)
  keep_first <- isTRUE(attr(call, "keep_first"))
  pick_value <- function() {
    if (runif(1) < 0.2) return(random_array())
    if (runif(1) < 0.15) {
      i <- sample(length(fuzz_context_values), 1L)
      return(list(label = names(fuzz_context_values)[i], value = fuzz_context_values[[i]]))
    }
    i <- sample(length(values), 1L)
    list(label = names(values)[i], value = values[i])  # a list of one, so NULL can be placed
  }
  put <- function(args, k, v) {
    if (is.list(v$value)) {
      if (is.language(v$value[[1L]])) v$value <- list(call("quote", v$value[[1L]]))
      args[k] <- v$value
    } else {
      args[[k]] <- v$value
    }
    args
  }
  arg_label <- function(k) if (is.null(names(args)) || !nzchar(names(args)[k])) paste0("#", k) else names(args)[k]
  # arguments written as list(...) or c(...) (inputs, shapes) can be fuzzed inside
  nested <- which(vapply(args, function(a) is.call(a) && length(a) > 1L &&
                           as.character(a[[1L]])[1L] %in% c("list", "c"), logical(1)))
  free <- if (keep_first) seq_len(n)[-1L] else seq_len(n)
  nested <- intersect(nested, free)
  pick_arg <- function() free[sample(length(free), 1L)]
  mode <- if (length(free) == 0L) sample(c("extra", "named"), 1L) else
    sample(c("one", "one", "one", "two", "drop", "named", "extra", if (length(nested)) c("inner", "inner")), 1L)
  label <- switch(mode,
    one = {
      k <- pick_arg(); v <- pick_value(); args <- put(args, k, v)
      sprintf("%s = %s", arg_label(k), v$label)
    },
    two = {
      ks <- unique(c(pick_arg(), pick_arg())); labs <- character()
      for (k in ks) { v <- pick_value(); args <- put(args, k, v); labs <- c(labs, sprintf("%s = %s", arg_label(k), v$label)) }
      paste(labs, collapse = ", ")
    },
    inner = {
      k <- nested[sample(length(nested), 1L)]
      inner <- as.list(args[[k]])
      j <- 1L + sample(length(inner) - 1L, 1L)
      v <- pick_value()
      inner <- put(inner, j, v)
      args[[k]] <- as.call(inner)
      sprintf("%s[[%d]] = %s", arg_label(k), j - 1L, v$label)
    },
    drop = {
      k <- pick_arg(); lab <- arg_label(k); args <- args[-k]
      sprintf("without %s", lab)
    },
    named = {
      v <- pick_value(); args <- c(args, stats::setNames(list(NULL), "fuzz_unknown")); args <- put(args, length(args), v)
      sprintf("fuzz_unknown = %s", v$label)
    },
    extra = {
      v <- pick_value(); args <- c(args, list(NULL)); args <- put(args, length(args), v)
      sprintf("extra positional %s", v$label)
    })
  list(call = as.call(c(list(call[[1L]]), args)), label = label)
}

# Fuzzes each entry of `table` with `n` mutations (deterministic per entry).
# Returns the failures as strings and the number of calls run.
fuzz_table <- function(table, n) {
  values <- fuzz_values()
  failures <- character()
  calls <- 0L
  threads <- get_num_threads(); flash <- config_is_flash_attention_enabled()
  buffer_cache <- get_buffer_cache_size()
  dir <- tempfile("fuzz"); dir.create(dir)
  wd <- setwd(dir)
  on.exit({
    setwd(wd)
    unlink(dir, recursive = TRUE)
    set_num_threads(threads)
    set_buffer_cache_size(buffer_cache)
    if (flash) config_enable_flash_attention() else config_disable_flash_attention()
  })
  for (i in seq_along(table)) {
    name <- names(table)[i]
    base <- fuzz_run(table[[i]])
    calls <- calls + 1L
    if (base$status != "ok") failures <- c(failures, sprintf("%s: the VALID call fails: %s", name, base$message))
    set.seed(as.integer(Sys.getenv("FUZZ_SEED", "1000")) + i)  # all mutations first: the fixtures and layers draw from the RNG too
    mutations <- lapply(seq_len(n), function(j) fuzz_mutate(table[[i]], values))
    for (m in mutations) {
      r <- fuzz_run(m$call)
      calls <- calls + 1L
      if (r$status == "bad") failures <- c(failures, sprintf("%s(%s): %s", name, m$label, r$message))
    }
  }
  list(failures = failures, calls = calls)
}

test_that("every export has a fuzz entry", {
  reexported <- c("%<-%", "%>%", ".")   # zeallot's, magrittr's and dotty's functions: their errors are theirs
  missing_entries <- setdiff(getNamespaceExports("multihead"), c(names(fuzz_exports), reexported))
  expect(length(missing_entries) == 0L,
         sprintf("Exports without a fuzz entry (add one line each to `fuzz_exports`): %s",
                 paste(sort(missing_entries), collapse = ", ")))
  expect_length(setdiff(names(fuzz_exports), getNamespaceExports("multihead")), 0L)
})

test_that("exports: random bad arguments return or raise one of our errors, never crash or hang", {
  old <- options(multihead.max_tensor_elements = 2^24)   # a fuzzed shape must not allocate gigabytes
  on.exit(options(old), add = TRUE)
  res <- fuzz_table(fuzz_exports, n = 200L)
  expect_gt(res$calls, 200L * length(fuzz_exports))
  expect(length(res$failures) == 0L,
         paste0(length(res$failures), " bad outcomes:\n", paste(utils::head(unique(res$failures), 40L), collapse = "\n")))
})

test_that("layer calls, model methods and `$` methods: bad arguments raise our errors", {
  grDevices::pdf(NULL)  # plot() of a history draws here
  on.exit(grDevices::dev.off(), add = TRUE)
  res <- fuzz_table(fuzz_callables, n = 120L)
  expect(length(res$failures) == 0L,
         paste0(length(res$failures), " bad outcomes:\n", paste(utils::head(unique(res$failures), 40L), collapse = "\n")))
})

test_that("`$` and `[[` on layers and models: every property and method, bad names and bad method arguments", {
  env <- fuzz_fixtures()
  objects <- list(dense = quote(dense()), dense_built = quote(dense_built()), mha = quote(mha()),
                  mha_built = quote(mha_built()), embedding = quote(emb_built()), model = quote(model()),
                  compiled = quote(compiled()), sequential = quote(seqm()),
                  norm = quote(layer_layer_normalization()), dropout = quote(layer_dropout(rate = 0.5)))
  values <- fuzz_values()
  failures <- character()
  note <- function(label, r) if (r$status == "bad") failures <<- c(failures, paste0(label, ": ", r$message))
  set.seed(2000)
  for (o in names(objects)) {
    obj <- eval(objects[[o]], env)
    members <- names(obj)
    expect_true(length(members) > 5L, info = o)
    for (nm in members) {
      # properties return; methods are called with no, one or two bad arguments
      note(sprintf("%s$%s", o, nm), fuzz_run(call("$", objects[[o]], as.name(nm))))
      if (isTRUE(tryCatch(is.function(eval(call("$", objects[[o]], as.name(nm)), env)), error = function(e) FALSE))) {
        for (k in 0:2) {
          picks <- sample(length(values), k)
          cl <- as.call(c(list(call("$", objects[[o]], as.name(nm))), unname(lapply(values[picks], function(v) {
            if (is.language(v)) call("quote", v) else v
          }))))
          note(sprintf("%s$%s(%s)", o, nm, paste(names(values)[picks], collapse = ", ")), fuzz_run(cl))
        }
      }
    }
    for (i in sample(length(values), 12L)) {
      v <- values[[i]]
      note(sprintf("%s[[%s]]", o, names(values)[i]),
           fuzz_run(call("[[", objects[[o]], if (is.language(v)) call("quote", v) else v)))
    }
    note(sprintf("%s$no_such_member", o), fuzz_run(call("$", objects[[o]], as.name("no_such_member"))))
  }
  expect(length(failures) == 0L, paste0(length(failures), " bad outcomes:\n", paste(failures, collapse = "\n")))
})

# ---- sizes: products checked before anything is allocated ---------------------

expect_size_error <- function(expr, arg) {
  err <- expect_error(expr, paste0("`", arg, "` must be small enough"), fixed = TRUE,
                      class = "multihead_error_argument")
  expect_match(conditionMessage(err), "options(multihead.max_tensor_elements)", fixed = TRUE)
  invisible(err)
}

test_that("weight sizes that overflow 32-bit products are errors naming the argument, before allocating", {
  x <- array(1, c(2, 5, 8))
  mha <- function(...) layer_multi_head_attention(num_heads = 2, key_dim = 2, ...)
  # each would need 64 GiB or more; the check runs before any allocation
  err <- expect_size_error(layer_dense(units = 2^30)(x), "units")
  expect_match(conditionMessage(err), "8,589,934,592 elements for shape (8, 1073741824)", fixed = TRUE)
  expect_size_error(layer_dense(units = 4)$build(c(NA, 2^30 + 1)), "units")
  expect_size_error(layer_embedding(input_dim = .Machine$integer.max, output_dim = 4), "output_dim")
  expect_size_error(layer_embedding(input_dim = 2^16, output_dim = 2^16), "output_dim")
  expect_size_error(layer_multi_head_attention(num_heads = 2^16, key_dim = 2^16)$build(c(2, 5, 8), c(2, 3, 6)),
                    "key_dim")
  expect_size_error(layer_multi_head_attention(num_heads = 2^12, key_dim = 2, value_dim = 2^20)(x, x),
                    "value_dim")
  expect_size_error(mha(output_shape = c(2^16, 2^16))(x, x), "output_shape")
  expect_size_error(mha()$build(c(2, 5, 2^29), c(2, 3, 6)), "key_dim")
  expect_size_error(layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 2^30))(x),
                    "output_shape")
  expect_size_error(layer_layer_normalization(axis = c(-2, -1))$build(c(NA, 2^16, 2^16)), "input_shape")
})

test_that("symbolic shapes with huge dimensions: output sizes are checked, never NA from overflow", {
  expect_size_error(layer_flatten(keras_input(shape = c(2^16, 2^16))), "inputs")
  expect_size_error(layer_dense(keras_input(shape = c(2^20, 2^20, 8)), units = 4), "inputs")
  expect_size_error(layer_embedding(keras_input(shape = c(2^20, 2^20)), input_dim = 10, output_dim = 4), "inputs")
  expect_size_error(layer_dense(keras_input(shape = 2^29), units = 16), "units")
  expect_size_error(keras_model_sequential(input_shape = .Machine$integer.max) |> layer_dense(units = 2), "units")
  # huge symbolic shapes alone are fine (nothing is allocated), and so is a
  # per-sample output within the limit
  t <- keras_input(shape = c(2^20, 2^10))
  expect_identical(shape(layer_flatten(t))[[2]], as.integer(2^30))
})

test_that("fit(epochs = .Machine$integer.max) stopped early allocates nothing per epoch", {
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(1)
  compile(model, optimizer = "sgd", loss = "mse")
  stop_now <- list(callback_early_stopping(monitor = "loss", min_delta = 1e300, patience = 0))
  # used to build the epoch vector (8 GiB) and warn of an integer overflow
  time <- system.time(h <- expect_silent(fit(model, matrix(1, 4, 3), matrix(1, 4, 1),
                                              epochs = .Machine$integer.max, verbose = 0, callbacks = stop_now)))
  expect_lt(time[["elapsed"]], 5)
  expect_length(h$metrics$loss, 2L)
  # as.data.frame() pads to params$epochs only when that is small
  expect_identical(nrow(as.data.frame(h)), 2L)
  h5 <- fit(model, matrix(1, 4, 3), matrix(1, 4, 1), epochs = 5, verbose = 0, callbacks = stop_now)
  expect_identical(nrow(as.data.frame(h5)), 5L)
})

test_that("run-time outputs larger than the limit are errors naming the input (limit lowered to test)", {
  with_limit <- function(n, code) {
    old <- options(multihead.max_tensor_elements = n)
    on.exit(options(old))
    code
  }
  x <- array(1, c(2, 5, 8)); v <- array(1, c(2, 3, 6)); ids <- matrix(1, 2, 5)
  dense <- layer_dense(units = 4); dense$build(c(NA, 8))
  emb <- layer_embedding(input_dim = 10, output_dim = 4); emb$build(c(NA, 5))
  einsum <- layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 4)); einsum$build(c(NA, 5, 8))
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2); mha$build(dim(x), dim(v))
  # every output below has (2, 5, 4) = 40 elements
  with_limit(39, {
    expect_match(conditionMessage(expect_size_error(dense(x), "inputs")), "the output of layer", fixed = TRUE)
    expect_size_error(emb(ids), "inputs")
    expect_size_error(einsum(x), "inputs")
  })
  expect_identical(with_limit(40, dim(dense(x))), c(2L, 5L, 4L))
  # attention: the projections (2, 5, 2 * 2) = 40 and (2, 3, 4) = 24, the output (2, 5, 8) = 80
  expect_match(conditionMessage(with_limit(19, expect_size_error(mha(x, v), "query"))), "projection")
  # the value's projection first: query (2, 2, 8) projects to 16 values, value to 24
  # (and the shape plan is cached after the first call: the limit is read on every call)
  x2 <- array(1, c(2, 2, 8))
  mha2 <- layer_multi_head_attention(num_heads = 2, key_dim = 2); mha2$build(dim(x2), dim(v))
  expect_identical(with_limit(40, dim(mha2(x2, v))), c(2L, 2L, 8L))
  expect_match(conditionMessage(with_limit(20, expect_size_error(mha2(x2, v), "value"))), "projection")
  expect_match(conditionMessage(with_limit(79, expect_size_error(mha(x, v), "query"))), "attention output")
  expect_identical(with_limit(80, dim(mha(x, v))), c(2L, 5L, 8L))
  # a (B, 1, 1, S) attention mask expands to (B, 1, T, S) = (2, 1, 5, 3) = 30 entries
  small_mask <- array(TRUE, c(2, 1, 1, 3))
  expect_identical(with_limit(80, dim(mha(x, v, attention_mask = small_mask))), c(2L, 5L, 8L))
  with_limit(29, expect_size_error(mha(x, v, attention_mask = small_mask), "attention_mask"))
  expect_error(with_limit("a", dense(x)), "`options(multihead.max_tensor_elements)` must be", fixed = TRUE,
               class = "multihead_error")
})

test_that("the C++ glue checks shape products for overflow before allocating (multihead_error, clear text)", {
  x <- array(1, c(2, 5, 8))
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2); mha$build(dim(x), dim(x))
  self <- multihead:::layer_self(mha)
  huge <- 2^30  # B * T * O = 2^90 overflows 64-bit integers
  call_core <- function(dims, return_scores = FALSE) {
    multihead:::cpp_mha_call(x, x, x, 0:2, 0:2, as.integer(dims), multihead:::mha_weight_slots(self),
                             NULL, NULL, c(1L, 1L), NULL, NULL, FALSE, 0L, 0, 1, 0, return_scores, TRUE, FALSE, 1L,
                             as.integer(c(2, 5, 8)), 0:2, as.integer(c(2, 2, 5, 5)), NULL)
  }
  err <- expect_error(call_core(c(huge, huge, 5, 8, 8, 8, 2, 2, 2, huge)), class = "multihead_error")
  expect_match(conditionMessage(err), "the attention output of shape (1073741824, 1073741824, 1073741824)",
               fixed = TRUE)
  expect_match(conditionMessage(err), "more than 2^52 elements", fixed = TRUE)
  err <- expect_error(call_core(c(2, 5, 2^26, 8, 8, 8, 2^26, 2, 2, 8), TRUE), class = "multihead_error")
  expect_match(conditionMessage(err), "the attention scores", fixed = TRUE)
  # the same call with consistent dims runs
  expect_identical(dim(call_core(c(2, 5, 5, 8, 8, 8, 2, 2, 2, 8))$output), c(2L, 5L, 8L))
})

test_that("a failed C++ allocation is a multihead_error saying so, not a bare std::bad_alloc", {
  # in a child R whose address space is capped at 1.5 GB: the flash path's
  # (1, 32768, 64 heads, 64) projections need 0.5 GB each, all in C++
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script))
  writeLines(c(sprintf(".libPaths(%s)", paste(deparse(.libPaths()), collapse = "")),
               "suppressMessages(library(multihead))",
               "x <- array(rnorm(2^15 * 8), c(1, 2^15, 8))",
               "m <- layer_multi_head_attention(num_heads = 64, key_dim = 64)",
               "e <- tryCatch(m(x, x), error = function(e) e)",
               "cat(class(e), '|', conditionMessage(e), '\\n')"), script)
  out <- system(sprintf("ulimit -v 1500000; '%s' --vanilla -s -f '%s' 2>&1", file.path(R.home("bin"), "R"), script),
                intern = TRUE)
  expect_match(paste(out, collapse = "\n"),
               "multihead_error C++Error error condition | multihead: not enough memory for this call", fixed = TRUE)
})

# Resident memory (Linux) or R's heap (elsewhere), in MB, after a full gc.
memory_mb <- function() {
  gc(full = TRUE)
  status <- if (file.exists("/proc/self/status")) readLines("/proc/self/status") else character()
  rss <- grep("^VmRSS:", status, value = TRUE)
  if (length(rss)) return(as.numeric(gsub("[^0-9]", "", rss)) / 1024)
  sum(gc()[, 2])
}

test_that("failing calls, including ones failing in C++ after allocating, do not grow memory", {
  set.seed(3)
  x <- array(rnorm(32 * 128 * 64), c(32, 128, 64))        # 2 MB per double copy: 25 leaks are 50 MB
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 8); mha$build(dim(x), dim(x))
  self <- multihead:::layer_self(mha)
  emb <- layer_embedding(input_dim = 10, output_dim = 64, dtype = "float64"); emb$build(c(NA, 4096))
  ids <- matrix(c(rep(1, 4095), 10), 1)                     # id 10 is out of range
  model <- keras_model_sequential(input_shape = c(128, 64)) |> layer_dense(4)
  compile(model, optimizer = "sgd", loss = "mse")
  bad <- x; bad[5] <- NaN
  failing <- list(
    # C++: the inputs are converted (allocated), then the output size check throws
    function() multihead:::cpp_mha_call(x, x, x, 0:2, 0:2, as.integer(c(2^30, 2^30, 64, 64, 64, 64, 2, 8, 8, 2^30)),
                                        multihead:::mha_weight_slots(self), NULL, c(1L, 1L), NULL, NULL, FALSE, 0L,
                                        0, 1, 0, FALSE, TRUE, TRUE, 2L, dim(x), 0:2, c(32L, 2L, 128L, 128L), NULL),
    # C++: the output is allocated, then the core throws on an id out of range
    function() multihead:::cpp_embedding_forward(ids, get_weights(emb)[[1]], TRUE, 2L),
    function() mha(x, x, attention_mask = array(TRUE, c(32, 128, 127))),
    function() mha(x, bad),
    function() backprop(mha, x, x, grad_output = x[, , 1:8]),
    function() predict(model, bad, verbose = 0),
    function() fit(model, x, matrix(0, 31, 4), verbose = 0),
    function() layer_dense(units = 2^30)(x)
  )
  # collecting after each batch keeps garbage from fragmenting malloc's heap
  # (which would raise the resident size without any leak)
  run_batch <- function() {
    for (f in failing) expect_error(f())
    invisible(gc())
  }
  for (i in 1:5) run_batch()  # warm-up: R's and malloc's pools reach their working size
  before <- memory_mb()
  for (i in 1:25) run_batch()
  growth <- memory_mb() - before
  expect_lt(growth, 20)  # leaking one input copy per batch would be 50 MB
})
