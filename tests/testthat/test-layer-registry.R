# The layer-class registry as the extension mechanism (register_layer_class()
# in R/layer.R): a class declares what generic code needs (input_args,
# sequential_call, activity_terms, h5_children, backprop) and generic code
# (symbolic calls, sequential models, activity regularization, Keras weights
# files, backprop()) uses those declarations, never the class name. The
# classes below are registered the way the built-in ones are, under names of
# their own.

# ---- a small two-input layer -----------------------------------------------------

# "Cross" layers: query (B, T, E) and value (B, S, E) ->
#   output[b, t, e] = query[b, t, e] * w[e] + mean over s of value[b, s, e]
# with one weight w (E). Written here in plain R with its exact gradients.
cross_values <- function(q, v, w) {
  d <- dim(q)
  vm <- apply(v, c(1, 3), mean)  # (B, E)
  sweep(q, 3, w, "*") + aperm(array(vm, c(d[1], d[3], d[2])), c(1, 3, 2))
}

cross_grads <- function(q, v, w, g) {
  dv <- dim(v)
  gs <- apply(g, c(1, 3), sum) / dv[2]  # (B, E)
  list(query = sweep(g, 3, w, "*"), value = aperm(array(gs, c(dv[1], dv[3], dv[2])), c(1, 3, 2)),
       w = apply(g * q, 3, sum))
}

# Registers class `class_name` (forward/backward of the formula above) with
# the registry fields given in `...`. The layer's inputs are a list named
# query/value when the class declares input_args, else the query alone
# with `value` among the call's other arguments (args$value). With
# `sub_layer = TRUE` the layer holds a Dense sub-layer "proj" (built with
# it, unused by the formula; its gradients are zero).
register_cross_class <- function(class_name, ...) {
  multihead:::register_layer_class(
    class_name,
    properties = multihead:::common_layer_properties,
    methods = multihead:::common_layer_methods,
    describe = function(self) "",
    get_config = function(self) list(name = self$name, dtype = self$dtype, sub_layer = self$sub_layer),
    from_config = function(config) new_cross(class_name, name = config$name, dtype = config$dtype,
                                             sub_layer = config$sub_layer),
    build = function(self, input_shape) {
      q <- if (is.list(input_shape)) input_shape[[1L]] else input_shape
      E <- q[length(q)]
      self$variables$w <- array(seq(0.5, 1.5, length.out = E), E)
      self$variable_names <- "w"
      if (isTRUE(self$sub_layer)) {
        proj <- layer_dense(units = 2, dtype = self$dtype, name = paste0(self$name, "_proj"))
        proj$build(q)
        self$sublayers <- list(proj = proj)
      }
      self$build_shapes <- q
      self$built <- TRUE
    },
    compute_output_shape = function(self, input_shape, args = list()) {
      if (is.list(input_shape)) input_shape[[1L]] else input_shape
    },
    forward = function(self, inputs, args = list(), training = FALSE, masks = NULL) {
      q <- if (is.list(inputs)) inputs$query else inputs
      v <- if (is.list(inputs)) inputs$value else args$value
      if (!isTRUE(self$built)) multihead:::layer_class_def(self)$build(self, list(dim(q), dim(v)))
      list(output = cross_values(q, v, self$variables$w), cache = list(q = q, v = v, two = is.list(inputs)),
           mask = NULL)
    },
    backward = function(self, cache, grad_output) {
      gr <- cross_grads(cache$q, cache$v, self$variables$w, grad_output)
      # named by weight path, in get_weights() order
      vars <- multihead:::layer_variables(self)
      weights <- c(list(gr$w), lapply(vars[-1L], function(v) array(0, dim(v))))
      names(weights) <- names(vars)
      list(inputs = if (cache$two) list(query = gr$query, value = gr$value) else gr$query, weights = weights)
    },
    ...)
}

# A layer of a class registered with register_cross_class(): a function of
# (query, value) run through the class's forward.
new_cross <- function(class_name, name = NULL, dtype = "float64", activity_regularizer = NULL,
                      sub_layer = FALSE) {
  self <- multihead:::new_layer_state(class_name, multihead:::keras_snake_case(class_name), name = name,
                                      dtype = dtype)
  self$config$activity_regularizer <- activity_regularizer
  self$sub_layer <- sub_layer
  multihead:::new_layer_object(self, function(query, value) {
    layer_class_def(self)$forward(self, list(query = query, value = value))$output
  })
}

rnd <- function(...) array(rnorm(prod(c(...))), c(...))

# ---- input_args ----------------------------------------------------------------------

test_that("input_args: a symbolic call takes the declared arguments as the node's named inputs", {
  register_cross_class("RegistryCrossNamed", input_args = c("query", "value"))
  register_cross_class("RegistryCrossFirst")  # no input_args: the first argument is the input
  set.seed(1)
  xq <- rnd(2, 4, 3); xv <- rnd(2, 5, 3); g <- rnd(2, 4, 3)
  q <- keras_input(shape = c(4, 3), dtype = "float64")
  v <- keras_input(shape = c(5, 3), dtype = "float64")
  named <- new_cross("RegistryCrossNamed")
  out <- named(value = v, query = q)  # by name, in any order
  expect_identical(names(out$node$inputs), c("query", "value"))
  expect_identical(out$shape, c(NA, 4L, 3L))
  out_pos <- named(q, v)
  expect_identical(names(out_pos$node$inputs), c("query", "value"))
  model <- keras_model(list(q, v), out)
  w <- seq(0.5, 1.5, length.out = 3)
  expect_equal(model(list(xq, xv)), cross_values(xq, xv, w), tolerance = 1e-12)
  bp <- backprop(model, list(xq, xv), grad_output = g)
  ref <- cross_grads(xq, xv, w, g)
  expect_equal(unname(bp$grads$inputs), list(ref$query, ref$value), tolerance = 1e-12)
  expect_equal(as.vector(bp$grads$weights[[1]]), ref$w, tolerance = 1e-12)
  # without input_args, `value` is a call argument: recorded, not differentiated
  first <- new_cross("RegistryCrossFirst")
  out2 <- first(query = q, value = v)
  expect_length(out2$node$inputs, 1L)
  expect_identical(names(out2$node$arg_tensors), "value")
  model2 <- keras_model(list(q, v), out2)
  expect_equal(model2(list(xq, xv)), cross_values(xq, xv, w), tolerance = 1e-12)
  bp2 <- backprop(model2, list(xq, xv), grad_output = g)
  expect_equal(bp2$grads$inputs[[1]], ref$query, tolerance = 1e-12)
  expect_equal(bp2$grads$inputs[[2]], array(0, dim(xv)))
})

test_that("register_layer_class() checks the declared fields", {
  expect_error(register_cross_class("RegistryCrossBad1", input_args = c("query", NA)), "input_args",
               class = "multihead_error")
  expect_error(register_cross_class("RegistryCrossBad2", input_args = c("a", "a")), "input_args",
               class = "multihead_error")
  for (field in c("sequential_call", "activity_terms", "h5_children", "backprop")) {
    args <- stats::setNames(list("not a function"), field)
    expect_error(do.call(register_cross_class, c(list(paste0("RegistryCrossBad_", field)), args)),
                 field, class = "multihead_error")
  }
})

# ---- sequential_call ------------------------------------------------------------------

test_that("sequential_call: a sequential model applies the layer as its class declares", {
  register_cross_class("RegistryCrossSelf", input_args = c("query", "value"),
                       sequential_call = function(layer, x) layer(query = x, value = x))
  set.seed(2)
  x <- rnd(3, 4, 2)
  w <- seq(0.5, 1.5, length.out = 2)
  layer <- new_cross("RegistryCrossSelf", name = "self_cross")
  model <- keras_model_sequential(input_shape = c(4, 2), input_dtype = "float64", layers = list(layer))
  expect_equal(model(x), cross_values(x, x, w), tolerance = 1e-12)
  node <- model$outputs[[1]]$node
  expect_identical(names(node$inputs), c("query", "value"))
  expect_identical(node$inputs[[1]]$id, node$inputs[[2]]$id)
  # unbuilt models apply it the same way when they are built
  lazy <- keras_model_sequential(layers = list(new_cross("RegistryCrossSelf", name = "lazy_cross")))
  expect_equal(lazy(x), cross_values(x, x, w), tolerance = 1e-12)
  cfg <- get_config(model)
  expect_true(cfg$layers[[1]]$self_attention)
  clone <- from_config(cfg)
  expect_equal(clone(x), model(x), tolerance = 1e-12)
  # a class without sequential_call gets layer(x)
  dense_model <- keras_model_sequential(input_shape = 2, layers = list(layer_dense(units = 1)))
  expect_false(get_config(dense_model)$layers[[1]]$self_attention)
})

# ---- activity_terms -------------------------------------------------------------------

test_that("activity_terms: the declared tensors are regularized, with their gradients", {
  # besides the output, the class regularizes 2 * query; gradient: 2 * g to the query
  register_cross_class("RegistryCrossActivity", input_args = c("query", "value"),
                       activity_terms = function(self, node_input_values, node_input_names) {
                         expect_identical(node_input_names, c("query", "value"))
                         q <- node_input_values[[1L]]
                         list(list(value = 2 * q, gradient = function(g) {
                           list(inputs = list(2 * g, NULL), weights = list())
                         }))
                       })
  register_cross_class("RegistryCrossPlain", input_args = c("query", "value"))
  set.seed(3)
  xq <- rnd(2, 3, 2); xv <- rnd(2, 4, 2)
  w <- seq(0.5, 1.5, length.out = 2)
  l2 <- 0.1
  run_reg <- function(class_name) {
    q <- keras_input(shape = c(3, 2), dtype = "float64")
    v <- keras_input(shape = c(4, 2), dtype = "float64")
    layer <- new_cross(class_name, activity_regularizer = regularizer_l2(l2))
    model <- keras_model(list(q, v), layer(q, v))
    self <- multihead:::layer_self(model)
    run <- multihead:::run_graph_forward(self$graph, list(xq, xv), NULL, FALSE, keep = TRUE)
    back <- multihead:::run_graph_backward(self$graph, run, list(array(0, c(2, 3, 2))), activity = TRUE)
    list(loss = multihead:::graph_activity_loss(self$graph, run), back = back, layer = layer)
  }
  out <- cross_values(xq, xv, w)
  B <- 2
  # l2 * sum(y^2) / batch for each regularized tensor, as Keras
  plain <- run_reg("RegistryCrossPlain")
  expect_equal(plain$loss, l2 * sum(out^2) / B, tolerance = 1e-12)
  act <- run_reg("RegistryCrossActivity")
  expect_equal(act$loss, l2 * sum(out^2) / B + l2 * sum((2 * xq)^2) / B, tolerance = 1e-12)
  # d/dquery: through the layer's backward (output term) plus 2 * (2 * l2 * 2q / B)
  g_out <- 2 * l2 * out / B
  ref <- cross_grads(xq, xv, w, g_out)
  expect_equal(plain$back$inputs[[1]], ref$query, tolerance = 1e-12)
  expect_equal(act$back$inputs[[1]], ref$query + 2 * (2 * l2 * 2 * xq / B), tolerance = 1e-12)
  expect_equal(act$back$inputs[[2]], ref$value, tolerance = 1e-12)
})

test_that("activity_terms: weight gradients of the extra terms reach the weights", {
  # the extra term is w itself broadcast (a tensor depending on a weight only)
  register_cross_class("RegistryCrossWeightTerm", input_args = c("query", "value"),
                       activity_terms = function(self, node_input_values, node_input_names) {
                         path <- paste0(self$name, "/w")
                         list(list(value = array(self$variables$w, c(1, length(self$variables$w))),
                                   gradient = function(g) list(inputs = list(NULL, NULL),
                                                               weights = stats::setNames(list(as.vector(g)), path))))
                       })
  set.seed(4)
  xq <- rnd(2, 3, 2); xv <- rnd(2, 4, 2)
  w <- seq(0.5, 1.5, length.out = 2)
  q <- keras_input(shape = c(3, 2), dtype = "float64")
  v <- keras_input(shape = c(4, 2), dtype = "float64")
  layer <- new_cross("RegistryCrossWeightTerm", activity_regularizer = regularizer_l1(0.5))
  model <- keras_model(list(q, v), layer(q, v))
  self <- multihead:::layer_self(model)
  run <- multihead:::run_graph_forward(self$graph, list(xq, xv), NULL, FALSE, keep = TRUE)
  back <- multihead:::run_graph_backward(self$graph, run, list(array(0, c(2, 3, 2))), activity = TRUE)
  grads <- multihead:::model_weight_grads(self, back$weights)
  out <- cross_values(xq, xv, w)
  B <- 2
  # output term through the layer's backward, plus d/dw of 0.5 * sum(|w|) / B
  ref <- cross_grads(xq, xv, w, 0.5 * sign(out) / B)
  expect_equal(as.vector(grads[[1]]), ref$w + 0.5 * sign(w) / B, tolerance = 1e-12)
})

# ---- h5_children ------------------------------------------------------------------------

h5_names <- function(path) {
  f <- hdf5r::H5File$new(path, mode = "r")
  on.exit(f$close_all())
  sort(f$ls(recursive = TRUE)$name)
}

h5_name_attr <- function(path, group) {
  f <- hdf5r::H5File$new(path, mode = "r")
  on.exit(f$close_all())
  hdf5r::h5attr(f[[group]], "name")
}

cross_model <- function(class_name, seed) {
  set.seed(seed)
  q <- keras_input(shape = c(3, 2), dtype = "float64")
  v <- keras_input(shape = c(4, 2), dtype = "float64")
  layer <- new_cross(class_name, name = "cross", sub_layer = TRUE)
  keras_model(list(q, v), layer(q, v))
}

test_that("h5_children: the declared groups hold the sub-layers, and alt paths are read", {
  children <- function(path, alt = character()) {
    function(self) list(list(path = path, layer = self$sublayers$proj, alt = alt),
                        list(path = "_aux", name = "aux"))
  }
  register_cross_class("RegistryCrossH5", input_args = c("query", "value"), h5_children = children("old_proj"))
  model <- cross_model("RegistryCrossH5", 5)
  f <- tempfile(fileext = ".weights.h5")
  on.exit(unlink(f), add = TRUE)
  save_model_weights(model, f)
  grp <- "layers/registry_cross_h5"
  expect_true(all(c(paste0(grp, "/vars/0"), paste0(grp, "/old_proj/vars/0"), paste0(grp, "/old_proj/vars/1"),
                    paste0(grp, "/_aux/vars")) %in% h5_names(f)))
  expect_identical(h5_name_attr(f, paste0(grp, "/_aux/vars")), "aux")
  expect_identical(h5_name_attr(f, paste0(grp, "/old_proj/vars")), "cross_proj")
  # the class moves its sub-layer's group; files of the old layout still load
  register_cross_class("RegistryCrossH5", input_args = c("query", "value"),
                       h5_children = children("proj", alt = "old_proj"))
  fresh <- cross_model("RegistryCrossH5", 6)
  expect_false(isTRUE(all.equal(get_weights(fresh), get_weights(model))))
  load_model_weights(fresh, f)
  expect_identical(get_weights(fresh), get_weights(model))
  f2 <- tempfile(fileext = ".weights.h5")
  on.exit(unlink(f2), add = TRUE)
  save_model_weights(fresh, f2)
  expect_true(paste0(grp, "/proj/vars/1") %in% h5_names(f2))
  expect_false(paste0(grp, "/old_proj") %in% h5_names(f2))
  # a class with sub-layers and no h5_children has no Keras layout
  register_cross_class("RegistryCrossNoH5", input_args = c("query", "value"))
  expect_error(save_model_weights(cross_model("RegistryCrossNoH5", 7), tempfile(fileext = ".weights.h5")),
               "does not cover", class = "multihead_error_unsupported")
  # h5_children must give every sub-layer a place
  register_cross_class("RegistryCrossMissingH5", input_args = c("query", "value"),
                       h5_children = function(self) list())
  expect_error(save_model_weights(cross_model("RegistryCrossMissingH5", 8), tempfile(fileext = ".weights.h5")),
               "cross_proj", class = "multihead_error_unsupported")
})

# ---- backprop ----------------------------------------------------------------------------

test_that("backprop: backprop() of a layer is what its class declares", {
  seen <- new.env()
  register_cross_class("RegistryCrossBackprop", input_args = c("query", "value"),
                       backprop = function(object, args, grad_output) {
                         seen$args <- names(args)
                         seen$missing <- missing(grad_output)
                         if (missing(grad_output)) stop("no gradient given")
                         q <- args$query; v <- args$value
                         gr <- cross_grads(q, v, seq(0.5, 1.5, length.out = dim(q)[3]), grad_output)
                         list(output = object(q, v), grads = gr)
                       })
  set.seed(9)
  xq <- rnd(2, 3, 2); xv <- rnd(2, 4, 2); g <- rnd(2, 3, 2)
  layer <- new_cross("RegistryCrossBackprop")
  res <- backprop(layer, query = xq, value = xv, grad_output = g)
  expect_identical(seen$args, c("query", "value"))
  expect_equal(res$output, cross_values(xq, xv, seq(0.5, 1.5, length.out = 2)), tolerance = 1e-12)
  expect_identical(res$grads, cross_grads(xq, xv, seq(0.5, 1.5, length.out = 2), g))
  expect_error(backprop(layer, query = xq, value = xv), "no gradient given")
  expect_true(seen$missing)
  # a class without backprop: backprop() refuses the layer
  register_cross_class("RegistryCrossNoBackprop", input_args = c("query", "value"))
  expect_error(backprop(new_cross("RegistryCrossNoBackprop"), query = xq, value = xv, grad_output = g),
               "`object`", class = "multihead_error_argument")
})

test_that("backprop() has one method for all layers (and one for models)", {
  methods <- as.character(utils::.S3methods("backprop", envir = asNamespace("multihead")))
  expect_setequal(methods, c("backprop.default", "backprop.multihead_layer", "backprop.multihead_model"))
  # built-in classes declare theirs in the registry
  for (cls in c("Dense", "EinsumDense", "Embedding", "LayerNormalization", "Dropout", "Add",
                "GlobalAveragePooling1D", "Flatten", "Activation", "MultiHeadAttention")) {
    expect_true(is.function(multihead:::layer_class_def(cls)$backprop), info = cls)
  }
  expect_null(multihead:::layer_class_def("InputLayer")$backprop)
})

# ---- custom layers (Layer()) in Keras's weights layout --------------------------------------

# A Layer() class with its own weight, sub-layers in plain attributes (one
# with an upper-case name, one private) and a list of layers.
custom_block_class <- function(classname) {
  Layer(classname,
    initialize = function(units, ...) {
      super$initialize(...)
      self$units <- units
      self$norm <- layer_layer_normalization(dtype = "float64")
      self$proj <- layer_dense(units = units, dtype = "float64")
      self$blocks <- list(layer_dense(units = units, dtype = "float64"),
                          layer_layer_normalization(dtype = "float64"),
                          layer_dense(units = units, activation = "tanh", dtype = "float64"))
      self$Out <- layer_dense(units = units, dtype = "float64")
      self$`_gate` <- layer_dense(units = units, activation = "sigmoid", dtype = "float64")
    },
    build = function(input_shape) {
      self$scale <- self$add_weight(shape = input_shape[length(input_shape)], initializer = "random_normal",
                                    name = "scale")
    },
    call = function(inputs) {
      h <- self$norm(op_multiply(inputs, self$scale))
      h <- self$proj(h)
      for (b in self$blocks) h <- b(h)
      op_multiply(self$Out(h), self$`_gate`(h))
    })
}

block_model <- function(ctor, seed) {
  set.seed(seed)
  x <- keras_input(shape = c(3, 4), dtype = "float64")
  h <- ctor(x, units = 4, dtype = "float64")
  keras_model(x, layer_dense(h, 2, dtype = "float64"))
}

test_that("a custom layer's weights round-trip through a Keras .weights.h5 file in Keras's layout", {
  ctor <- custom_block_class("RegistryBlock")
  model <- block_model(ctor, 11)
  f <- tempfile(fileext = ".weights.h5")
  on.exit(unlink(f), add = TRUE)
  save_model_weights(model, f)
  # keras/src/saving/saving_lib.py: _save_state() gives every layer
  # "<path>/vars" with its own variables ("0", "1", ...; layer.py
  # save_own_variables()); _walk_saveable() visits the model's `layers`
  # container ("layers/<snake_case class>", _save_container_state()), then a
  # layer's attributes: a layer in an attribute at "<path>/<attribute>", the
  # layers of a list attribute at "<path>/<attribute>/<snake_case class>",
  # "_1", ... counted per class within the list.
  b <- "layers/registry_block"
  expected_datasets <- c(
    "layers/dense/vars/0", "layers/dense/vars/1",
    paste0(b, "/vars/0"),                                       # scale
    paste0(b, "/Out/vars/", 0:1),
    paste0(b, "/_gate/vars/", 0:1),
    paste0(b, "/blocks/dense/vars/", 0:1),
    paste0(b, "/blocks/layer_normalization/vars/", 0:1),        # gamma, beta
    paste0(b, "/blocks/dense_1/vars/", 0:1),
    paste0(b, "/norm/vars/", 0:1),
    paste0(b, "/proj/vars/", 0:1))
  all_paths <- h5_names(f)
  datasets <- grep("/vars/[0-9]+$", all_paths, value = TRUE)
  expect_setequal(datasets, expected_datasets)
  expect_true(all(c("vars", "layers/input_layer/vars") %in% all_paths))
  blk <- multihead:::layer_self(Filter(function(l) inherits(l, "RegistryBlock"), model$layers)[[1]])
  expect_identical(h5_name_attr(f, paste0(b, "/vars")), blk$name)
  # the dataset "0" of the block is its own weight
  fh <- hdf5r::H5File$new(f, mode = "r")
  expect_equal(as.vector(fh[[paste0(b, "/vars/0")]]$read()), as.vector(blk$variables$scale))
  fh$close_all()
  # into a model made with other random weights
  other <- block_model(ctor, 12)
  x <- rnd(2, 3, 4)
  expect_false(isTRUE(all.equal(other(x), model(x))))
  load_model_weights(other, f)
  expect_identical(get_weights(other), get_weights(model))
  expect_identical(other(x), model(x))
})

test_that("custom layers: a shared sub-layer is saved once, where Keras's walk first reaches it", {
  # _walk_saveable() sorts attribute names in code-point order (upper case
  # before lower case) with private ("_") names last (_name_key()), and
  # _save_state() skips an object already visited; the list's class counter
  # still counts it (_save_container_state() names before saving).
  ctor <- Layer("RegistryShared",
    initialize = function(...) {
      super$initialize(...)
      shared <- layer_dense(units = 3, dtype = "float64")
      gate <- layer_dense(units = 3, dtype = "float64")
      self$Shared <- shared
      self$list <- list(shared, layer_dense(units = 3, dtype = "float64"))
      self$`_gate` <- gate
      self$zeta <- gate
    },
    call = function(inputs) op_add(op_add(self$Shared(inputs), self$list[[2]](inputs)), self$zeta(inputs)))
  set.seed(13)
  x <- keras_input(shape = 3, dtype = "float64")
  model <- keras_model(x, ctor(x, dtype = "float64"))
  f <- tempfile(fileext = ".weights.h5")
  on.exit(unlink(f), add = TRUE)
  save_model_weights(model, f)
  s <- "layers/registry_shared"
  datasets <- grep("/vars/[0-9]+$", h5_names(f), value = TRUE)
  expect_setequal(datasets, c(paste0(s, "/Shared/vars/", 0:1), paste0(s, "/list/dense_1/vars/", 0:1),
                              paste0(s, "/zeta/vars/", 0:1)))
  other <- keras_model(x, ctor(x, dtype = "float64"))
  load_model_weights(other, f)
  expect_identical(get_weights(other), get_weights(model))
})

test_that("custom layers: sub-layers Keras would not save are an error naming the attribute", {
  ctor <- Layer("RegistryNested",
    initialize = function(...) {
      super$initialize(...)
      self$nested <- list(list(layer_dense(units = 2, dtype = "float64")))
    },
    call = function(inputs) self$nested[[1]][[1]](inputs))
  x <- keras_input(shape = 3, dtype = "float64")
  model <- keras_model(x, ctor(x, dtype = "float64"))
  expect_error(save_model_weights(model, tempfile(fileext = ".weights.h5")), "nested[[1]][[1]]", fixed = TRUE,
               class = "multihead_error_unsupported")
})
