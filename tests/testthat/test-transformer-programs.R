# The transformer programs keras3 users copy, run here with library(keras3)
# replaced by library(multihead), their data swapped for small local arrays
# and their sizes reduced: the custom layers, op calls, compile/fit/predict
# and generation loops are as written in the sources (differences are
# marked "CHANGED:" with the reason). Each learns its toy task: held-out
# accuracy well above chance.
#
#  1. keras3's example "English-to-Spanish translation with a
#     sequence-to-sequence Transformer" (rstudio/keras3,
#     vignettes-src/examples/nlp/neural_machine_translation_with_transformer.Rmd)
#  2. "Deep Learning with R": the text-classification TransformerEncoder
#  3. "Deep Learning with R" (3rd ed., chapter 15): the translation Transformer
#  4. "Deep Learning with R" (3rd ed., chapter 16): the mini-GPT text generator

set_num_threads(1)

test_that("1. keras3's translation example: custom encoder, decoder and positional embedding train and decode", {
  set.seed(11)
  # CHANGED (data): a toy "translation" instead of the spa-eng file and TextVectorization: source
  # words 3..12, each translated to a fixed target word 13..22; [start] = 1, [end] = 2, padding 0.
  vocab_size <- 24
  sequence_length <- 6
  n_words <- sample(3:5, 1200, replace = TRUE)
  make_pairs <- function(n_words) {
    n <- length(n_words)
    eng <- matrix(0L, n, sequence_length)
    spa <- matrix(0L, n, sequence_length + 1)
    for (i in seq_len(n)) {
      w <- sample(3:12, n_words[i], replace = TRUE)
      eng[i, seq_along(w)] <- w
      spa[i, seq_len(n_words[i] + 2)] <- c(1L, w + 10L, 2L)
    }
    list(encoder_inputs = eng, decoder_inputs = spa[, -ncol(spa)], target = spa[, -1])
  }
  train <- make_pairs(n_words)
  test <- make_pairs(sample(3:5, 200, replace = TRUE))

  layer_transformer_encoder <- Layer(
    classname = "TransformerEncoder",
    initialize = function(embed_dim, dense_dim, num_heads, ...) {
      super$initialize(...)
      self$embed_dim <- embed_dim
      self$dense_dim <- dense_dim
      self$num_heads <- num_heads
      self$attention <-
        layer_multi_head_attention(num_heads = num_heads,
                                   key_dim = embed_dim)

      self$dense_proj <- keras_model_sequential() %>%
        layer_dense(dense_dim, activation = "relu") %>%
        layer_dense(embed_dim)

      self$layernorm_1 <- layer_layer_normalization()
      self$layernorm_2 <- layer_layer_normalization()
      self$supports_masking <- TRUE
    },

    call = function(inputs, mask = NULL) {
      if (!is.null(mask))
        mask <- mask[, NULL, ] |> op_cast("int32")

      inputs %>%
        { self$attention(., ., attention_mask = mask) + . } %>%
        self$layernorm_1() %>%
        { self$dense_proj(.) + . } %>%
        self$layernorm_2()
    },

    get_config = function() {
      config <- super$get_config()
      for(name in c("embed_dim", "num_heads", "dense_dim"))
        config[[name]] <- self[[name]]
      config
    }
  )

  layer_transformer_decoder <- Layer(
    classname = "TransformerDecoder",

    initialize = function(embed_dim, latent_dim, num_heads, ...) {
      super$initialize(...)
      self$embed_dim <- embed_dim
      self$latent_dim <- latent_dim
      self$num_heads <- num_heads
      self$attention_1 <- layer_multi_head_attention(num_heads = num_heads,
                                                     key_dim = embed_dim)
      self$attention_2 <- layer_multi_head_attention(num_heads = num_heads,
                                                     key_dim = embed_dim)
      self$dense_proj <- keras_model_sequential() %>%
        layer_dense(latent_dim, activation = "relu") %>%
        layer_dense(embed_dim)

      self$layernorm_1 <- layer_layer_normalization()
      self$layernorm_2 <- layer_layer_normalization()
      self$layernorm_3 <- layer_layer_normalization()
      self$supports_masking <- TRUE
    },

    get_config = function() {
      config <- super$get_config()
      for (name in c("embed_dim", "num_heads", "latent_dim"))
        config[[name]] <- self[[name]]
      config
    },

    get_causal_attention_mask = function(inputs) {
      .[batch_size, sequence_length, encoding_length] <- op_shape(inputs)

      x <- op_arange(0L, sequence_length, include_end = FALSE)
      i <- x[, newaxis]
      j <- x[newaxis, ]
      mask <- op_cast(i >= j, "int32")

      op_tile(
        mask[newaxis, , ],
        shape(batch_size, 1L, 1L)
      )
    },

    call = function(inputs, mask = NULL) {
      c(inputs_seq, encoder_outputs) %<-% inputs
      causal_mask <- self$get_causal_attention_mask(inputs_seq)

      if (is.null(mask)) {
        inputs_padding_mask <- NULL
        encoder_outputs_padding_mask <- NULL
      } else {
        c(inputs_padding_mask, encoder_outputs_padding_mask) %<-% mask
      }

      attention_output_1 <- self$attention_1(
        query = inputs_seq,
        value = inputs_seq,
        key = inputs_seq,
        attention_mask = causal_mask,
        query_mask = inputs_padding_mask
      )
      out_1 <- self$layernorm_1(inputs_seq + attention_output_1)

      attention_output_2 <- self$attention_2(
        query = out_1,
        value = encoder_outputs,
        key = encoder_outputs,
        query_mask = inputs_padding_mask,
        key_mask = encoder_outputs_padding_mask
      )
      out_2 <- self$layernorm_2(out_1 + attention_output_2)

      self$layernorm_3(out_2 + self$dense_proj(out_2))
    }
  )

  layer_positional_embedding <- Layer(
    classname = "PositionalEmbedding",

    initialize = function(sequence_length, vocab_size, embed_dim, ...) {
      super$initialize(...)
      self$token_embeddings <- layer_embedding(
        input_dim = vocab_size, output_dim = embed_dim
      )
      self$position_embeddings <- layer_embedding(
        input_dim = sequence_length, output_dim = embed_dim
      )
      self$sequence_length <- sequence_length
      self$vocab_size <- vocab_size
      self$embed_dim <- embed_dim
    },

    call = function(inputs) {
      .[., len] <- op_shape(inputs) # (batch_size, seq_len)
      positions <- op_arange(0, len, dtype = "int32", include_end = FALSE)
      embedded_tokens <- self$token_embeddings(inputs)
      embedded_positions <- self$position_embeddings(positions)
      embedded_tokens + embedded_positions
    },

    compute_mask = function(inputs, mask = NULL) {
      inputs != 0L
    },

    get_config = function() {
      config <- super$get_config()
      for(name in c("sequence_length", "vocab_size", "embed_dim"))
        config[[name]] <- self[[name]]
      config
    }
  )
  # CHANGED (sizes): 256 / 2048 / 8 in the example
  embed_dim <- 16
  latent_dim <- 32
  num_heads <- 2

  encoder_inputs <- layer_input(shape(NA), dtype = "int64",
                                name = "encoder_inputs")
  encoder_outputs <- encoder_inputs %>%
    layer_positional_embedding(sequence_length, vocab_size, embed_dim) %>%
    layer_transformer_encoder(embed_dim, latent_dim, num_heads)

  encoder <- keras_model(encoder_inputs, encoder_outputs)

  decoder_inputs <-  layer_input(shape(NA), dtype = "int64",
                                 name = "decoder_inputs")
  encoded_seq_inputs <- layer_input(shape(NA, embed_dim),
                                    name = "decoder_state_inputs")

  transformer_decoder <- layer_transformer_decoder(NULL,
    embed_dim, latent_dim, num_heads)

  decoder_outputs <- decoder_inputs %>%
    layer_positional_embedding(sequence_length, vocab_size, embed_dim) %>%
    { transformer_decoder(list(., encoded_seq_inputs)) } %>%
    layer_dropout(0.5) %>%
    layer_dense(vocab_size, activation="softmax")

  decoder <- keras_model(inputs = list(decoder_inputs, encoded_seq_inputs),
                         outputs = decoder_outputs)

  decoder_outputs <- decoder(list(decoder_inputs, encoder_outputs))

  transformer <- keras_model(
    inputs = list(encoder_inputs = encoder_inputs, decoder_inputs = decoder_inputs),
    outputs = decoder_outputs,
    name = "transformer"
  )
  epochs <- 8  # CHANGED: 1 in the example ("should be at least 30 for convergence")

  expect_output(print(transformer), "transformer")
  transformer |> compile(
    "rmsprop",
    loss = loss_sparse_categorical_crossentropy(ignore_class = 0),
    metrics = "accuracy"
  )

  # CHANGED (data): arrays instead of a tf dataset
  transformer |> fit(train[c("encoder_inputs", "decoder_inputs")], train$target,
                     epochs = epochs, batch_size = 64, verbose = 0)

  # CHANGED: the example's decoding uses tf.strings and tf_function; the same greedy loop on ids
  decode_sequence <- function(input_ids) {
    decoded <- matrix(c(1L, rep(0L, sequence_length - 1L)), 1)
    for (i in seq_len(sequence_length - 1L)) {
      predictions <- predict(transformer, list(encoder_inputs = matrix(input_ids, 1),
                                               decoder_inputs = decoded), verbose = 0)
      sampled_token_index <- which.max(predictions[1, i, ]) - 1L
      decoded[1, i + 1L] <- sampled_token_index
      if (sampled_token_index == 2L) break
    }
    decoded[1, ]
  }
  correct <- 0; total <- 0
  for (k in 1:20) {
    out <- decode_sequence(test$encoder_inputs[k, ])
    ref <- test$decoder_inputs[k, ]
    n <- sum(test$encoder_inputs[k, ] != 0)
    correct <- correct + sum(out[2:(n + 1)] == ref[2:(n + 1)])
    total <- total + n
  }
  expect_gt(correct / total, 0.6)   # chance: 1 in 24
})

test_that("2. Deep Learning with R: the text-classification TransformerEncoder learns", {
  set.seed(12)
  # CHANGED (data): token ids instead of IMDB reviews through TextVectorization; a review is
  # "positive" when it mentions token 5 more often than token 6.
  max_length <- 20
  max_tokens <- 30
  make_reviews <- function(n) {
    x <- matrix(sample(7:(max_tokens - 1), n * max_length, replace = TRUE), n, max_length)
    k5 <- sample(0:3, n, replace = TRUE); k6 <- sample(0:3, n, replace = TRUE)
    k6[k5 == k6] <- (k6[k5 == k6] + 1) %% 4
    for (i in seq_len(n)) {
      pos <- sample.int(max_length - 4, k5[i] + k6[i])
      x[i, pos] <- c(rep(5L, k5[i]), rep(6L, k6[i]))
      x[i, (max_length - sample(0:4, 1)):max_length] <- 0L   # padding
    }
    list(x = x, y = as.numeric(k5 > k6))
  }
  train <- make_reviews(3000)
  test <- make_reviews(600)

  layer_transformer_encoder <- new_layer_class(
    classname = "TransformerEncoder",
    initialize = function(embed_dim, dense_dim, num_heads, ...) {
      super$initialize(...)
      self$embed_dim <- embed_dim
      self$dense_dim <- dense_dim
      self$num_heads <- num_heads
      self$attention <- layer_multi_head_attention(num_heads = num_heads,
                                                   key_dim = embed_dim)
      self$dense_proj <- keras_model_sequential() %>%
        layer_dense(dense_dim, activation = "relu") %>%
        layer_dense(embed_dim)
      self$layernorm_1 <- layer_layer_normalization()
      self$layernorm_2 <- layer_layer_normalization()
    },

    call = function(inputs, mask = NULL) {
      if (!is.null(mask))
        mask <- mask[, newaxis, ]   # CHANGED: tf$newaxis in the book's TensorFlow-era listing

      inputs %>%
        { self$attention(., ., attention_mask = mask) + . } %>%
        self$layernorm_1() %>%
        { self$dense_proj(.) + . } %>%
        self$layernorm_2()
    },

    get_config = function() {
      config <- super$get_config()
      for(name in c("embed_dim", "num_heads", "dense_dim"))
        config[[name]] <- self[[name]]
      config
    }
  )

  vocab_size <- max_tokens
  embed_dim <- 16    # CHANGED (sizes): 256 / 32 / 2 in the book
  num_heads <- 2
  dense_dim <- 32

  inputs <- layer_input(shape(NA), dtype = "int64")
  outputs <- inputs %>%
    layer_embedding(vocab_size, embed_dim) %>%
    layer_transformer_encoder(embed_dim, dense_dim, num_heads) %>%
    layer_global_max_pooling_1d() %>%
    layer_dropout(0.5) %>%
    layer_dense(1, activation = "sigmoid")

  model <- keras_model(inputs, outputs)
  model %>% compile(optimizer = "rmsprop",
                    loss = "binary_crossentropy",
                    metrics = "accuracy")
  expect_output(summary(model), "TransformerEncoder")
  model %>% fit(train$x, train$y, validation_split = 0.1, epochs = 10, batch_size = 64, verbose = 0)
  res <- model %>% evaluate(test$x, test$y, verbose = 0)
  expect_gt(res[["accuracy"]], 0.8)   # chance: about 0.5
})

test_that("3. Deep Learning with R (chapter 15): the translation Transformer with source masks", {
  set.seed(13)
  # CHANGED (data): the same toy translation as program 1 (English ids 3..12, Spanish 13..22)
  vocab_size <- 24
  sequence_length <- 6
  make_pairs <- function(n) {
    eng <- matrix(0L, n, sequence_length); spa <- matrix(0L, n, sequence_length + 1)
    for (i in seq_len(n)) {
      w <- sample(3:12, sample(3:5, 1), replace = TRUE)
      eng[i, seq_along(w)] <- w
      spa[i, seq_len(length(w) + 2)] <- c(1L, w + 10L, 2L)
    }
    list(english = eng, spanish = spa[, -ncol(spa)], target = spa[, -1], weight = spa[, -1] != 0)
  }
  train <- make_pairs(1200)
  test <- make_pairs(200)

  layer_transformer_encoder <- new_layer_class(
    "TransformerEncoder",
    initialize = function(hidden_dim, intermediate_dim, num_heads) {
      super$initialize()
      key_dim <- hidden_dim %/% num_heads
      self$self_attention <- layer_multi_head_attention(
        num_heads = num_heads,
        key_dim = key_dim
      )
      self$self_attention_layernorm <- layer_layer_normalization()
      self$feed_forward_1 <- layer_dense(, intermediate_dim,
                                         activation = "relu")
      self$feed_forward_2 <- layer_dense(, hidden_dim)
      self$feed_forward_layernorm <- layer_layer_normalization()
    },
    call = function(source, source_mask) {
      residual <- x <- source
      mask <- source_mask[, newaxis, ]   # CHANGED: source_mask@r[, newaxis, ] (tensorflow's @r needs R >= 4.3)
      x <- self$self_attention(
        query = x,
        key = x,
        value = x,
        attention_mask = mask
      )
      x <- x + residual
      x <- x |> self$self_attention_layernorm()

      residual <- x
      x <- x |>
        self$feed_forward_1() |>
        self$feed_forward_2()
      x <- x + residual
      x <- x |> self$feed_forward_layernorm()
      x
    }
  )

  layer_transformer_decoder <- new_layer_class(
    "TransformerDecoder",
    initialize = function(hidden_dim, intermediate_dim, num_heads) {
      super$initialize()
      key_dim <- hidden_dim %/% num_heads
      self$self_attention <- layer_multi_head_attention(
        num_heads = num_heads,
        key_dim = key_dim
      )
      self$cross_attention <- layer_multi_head_attention(
        num_heads = num_heads,
        key_dim = key_dim
      )
      self$self_attention_layernorm <- layer_layer_normalization()
      self$cross_attention_layernorm <- layer_layer_normalization()
      self$feed_forward_1 <- layer_dense(, intermediate_dim,
                                         activation = "relu")
      self$feed_forward_2 <- layer_dense(, hidden_dim)
      self$feed_forward_layernorm <- layer_layer_normalization()
    },
    call = function(target, source, source_mask) {
      residual <- x <- target
      x <- self$self_attention(query = x, key = x, value = x,
                               use_causal_mask = TRUE)
      x <- x + residual
      x <- x |> self$self_attention_layernorm()

      residual <- x
      mask <- source_mask[, newaxis, ]   # CHANGED: source_mask@r[, newaxis, ]
      x <- self$cross_attention(
        query = x, key = source, value = source,
        attention_mask = mask
      )
      x <- x + residual
      x <- x |> self$cross_attention_layernorm()

      residual <- x
      x <- x |>
        self$feed_forward_1() |>
        self$feed_forward_2()
      x <- x + residual
      x <- x |> self$feed_forward_layernorm()

      x
    }
  )

  layer_positional_embedding <- new_layer_class(
    "PositionalEmbedding",
    initialize = function(sequence_length, input_dim, output_dim) {
      super$initialize()
      self$token_embeddings <- layer_embedding(input_dim = input_dim,
                                               output_dim = output_dim)
      self$position_embeddings <- layer_embedding(input_dim = sequence_length,
                                                  output_dim = output_dim)
    },
    call = function(inputs) {
      .[.., sequence_length] <- op_shape(inputs)
      positions <-
        op_arange(0, sequence_length - 1, dtype = "int32") |>
        op_expand_dims(1)
      embedded_tokens <- self$token_embeddings(inputs)
      embedded_positions <- self$position_embeddings(positions)
      embedded_tokens + embedded_positions
    }
  )

  hidden_dim <- 16        # CHANGED (sizes): 256 / 2056 / 8 in the book
  intermediate_dim <- 32
  num_heads <- 2

  encoder <- layer_transformer_encoder(
    hidden_dim = hidden_dim,
    intermediate_dim = intermediate_dim,
    num_heads = num_heads
  )

  decoder <- layer_transformer_decoder(
    hidden_dim = hidden_dim,
    intermediate_dim = intermediate_dim,
    num_heads = num_heads
  )

  source <- keras_input(shape = NA, dtype = "int32", name = "english")

  encoder_output <- source |>
    layer_positional_embedding(sequence_length, vocab_size, hidden_dim) |>
    encoder(source_mask = source != 0L)

  target <- keras_input(shape = list(NULL), dtype = "int32", name = "spanish")

  target_predictions <- target |>
    layer_positional_embedding(sequence_length, vocab_size, hidden_dim) |>
    decoder(source = encoder_output, source_mask = source != 0L) |>
    layer_dropout(rate = 0.5) |>
    layer_dense(units = vocab_size, activation = "softmax")

  transformer <- keras_model(
    inputs = list(source, target),
    outputs = target_predictions
  )

  transformer |> compile(
    optimizer = "adam",
    loss = "sparse_categorical_crossentropy",
    weighted_metrics = "accuracy"
  )
  # CHANGED (data): arrays and sample weights instead of the tf dataset (which yields the same triple)
  transformer |> fit(list(train$english, train$spanish), train$target, sample_weight = train$weight,
                     epochs = 10, batch_size = 64, verbose = 0)

  generate_translation <- function(tokenized_input_sentence) {
    decoded_sentence <- c(1L, rep(0L, sequence_length - 1L))   # CHANGED: ids, not strings
    for (i in seq_len(sequence_length - 1L)) {
      inputs <- list(matrix(tokenized_input_sentence, 1), matrix(decoded_sentence, 1))
      next_token_predictions <- predict(transformer, inputs, verbose = 0)
      sampled_token_index <- which.max(next_token_predictions[, i, ])
      decoded_sentence[i + 1L] <- sampled_token_index - 1L
      if (sampled_token_index - 1L == 2L) break
    }
    decoded_sentence
  }
  correct <- 0; total <- 0
  for (k in 1:20) {
    out <- generate_translation(test$english[k, ])
    n <- sum(test$english[k, ] != 0)
    correct <- correct + sum(out[2:(n + 1)] == test$spanish[k, 2:(n + 1)])
    total <- total + n
  }
  expect_gt(correct / total, 0.6)   # chance: 1 in 24
})

test_that("4. Deep Learning with R (chapter 16): the mini-GPT with tied embeddings, a warmup schedule and generation", {
  set.seed(14)
  # CHANGED (data): sequences that count up by a per-sequence step (1, 2 or 3) modulo 30, instead of
  # the mini-C4 corpus and its SentencePiece tokenizer; the next token follows from the last two.
  sequence_length <- 12
  vocab_size <- 30
  make_batch <- function(n) {
    start <- sample(0:29, n, replace = TRUE); step <- sample(1:3, n, replace = TRUE)
    x <- outer(seq_len(n), 0:sequence_length, function(i, t) (start[i] + step[i] * t) %% vocab_size)
    list(x = x[, 1:sequence_length], y = x[, 2:(sequence_length + 1)])
  }
  train <- make_batch(3000)

  layer_transformer_decoder <- new_layer_class(
    "TransformerDecoder",
    initialize = function(hidden_dim, intermediate_dim, num_heads) {
      super$initialize()
      key_dim <- hidden_dim %/% num_heads
      self$self_attention <- layer_multi_head_attention(
        num_heads = num_heads,
        key_dim = key_dim,
        dropout = 0.1
      )
      self$self_attention_layernorm <- layer_layer_normalization()
      self$feed_forward_1 <- layer_dense(units = intermediate_dim,
                                         activation = "relu")
      self$feed_forward_2 <- layer_dense(units = hidden_dim)
      self$feed_forward_layernorm <- layer_layer_normalization()
      self$dropout <- layer_dropout(rate = 0.1)
    },
    call = function(inputs) {
      residual <- x <- inputs
      x <- self$self_attention(query = x, key = x, value = x,
                               use_causal_mask = TRUE)
      x <- x |> self$dropout()
      x <- x + residual
      x <- x |> self$self_attention_layernorm()

      residual <- x
      x <- x |>
        self$feed_forward_1() |>
        self$feed_forward_2() |>
        self$dropout()
      x <- x + residual
      x <- x |> self$feed_forward_layernorm()

      x
    }
  )

  layer_positional_embedding <- new_layer_class(
    "PositionalEmbedding",
    initialize = function(sequence_length, input_dim, output_dim) {
      super$initialize()
      self$token_embeddings <- layer_embedding(
        input_dim = input_dim, output_dim = output_dim
      )
      self$position_embeddings <- layer_embedding(
        input_dim = sequence_length, output_dim = output_dim
      )
    },
    call = function(inputs, reverse = FALSE) {
      if (reverse) {
        token_embeddings <- self$token_embeddings$embeddings
        return(inputs %*% t(token_embeddings))
      }
      .[.., sequence_length] <- op_shape(inputs)
      positions <-
        op_arange(0, sequence_length - 1, dtype = "int32") |>
        op_expand_dims(1)
      embedded_tokens <- self$token_embeddings(inputs)
      embedded_positions <- self$position_embeddings(positions)
      embedded_tokens + embedded_positions
    }
  )

  expect_message(config_set_dtype_policy("mixed_float16"), "float32")
  on.exit(config_set_dtype_policy("float32"), add = TRUE)
  hidden_dim <- 32          # CHANGED (sizes): 512 / 2056 / 8 / 8 in the book
  intermediate_dim <- 64
  num_heads <- 2
  num_layers <- 2

  inputs <- keras_input(shape = c(NA), dtype = "int32", name = "inputs")
  embedding <-
    layer_positional_embedding(, sequence_length, vocab_size, hidden_dim)

  x <- inputs |>
    embedding() |>
    layer_layer_normalization()

  for (i in seq_len(num_layers)) {
    x <- x |>
      layer_transformer_decoder(hidden_dim, intermediate_dim, num_heads)
  }

  outputs <- x |> embedding(reverse = TRUE)
  mini_gpt <- keras_model(inputs, outputs)

  warmup_schedule <- new_learning_rate_schedule_class(
    classname = "WarmupSchedule",

    initialize = function() {
      self$rate <- 2e-3       # CHANGED: 2e-4 and 1000 warm-up steps for the full corpus
      self$warmup_steps <- 50
    },

    call = function(step) {
      step <- step |> op_cast(dtype = "float32")
      scale <- op_minimum(step / self$warmup_steps, 1)
      self$rate * scale
    }
  )
  schedule <- warmup_schedule()
  x <- seq(0, 100, by = 10)
  y <- sapply(x, \(step) as.array(schedule(step)))
  expect_equal(y, 2e-3 * pmin(x / 50, 1), tolerance = 1e-6)

  mini_gpt |> compile(
    optimizer = optimizer_adam(schedule),
    loss = loss_sparse_categorical_crossentropy(from_logits = TRUE),
    metrics = "accuracy"
  )
  mini_gpt |> fit(train$x, train$y, epochs = 6, batch_size = 64, verbose = 0)  # CHANGED: arrays

  # tied embeddings: the token embedding is trained by both of its uses
  emb <- mini_gpt$layers[[2]]
  expect_s3_class(emb, "PositionalEmbedding")

  compiled_generate <- function(prompt_tokens, sample_fn, max_length = sequence_length) {
    tokens <- prompt_tokens                       # CHANGED: token ids, no tokenizer
    prompt_length <- length(tokens)
    tokens[seq(prompt_length + 1, max_length)] <- 0L
    dim(tokens) <- c(1, max_length)
    storage.mode(tokens) <- "integer"
    for (i in seq(prompt_length, max_length - 1)) {
      prediction <- predict(mini_gpt, tokens, verbose = 0)
      prediction <- prediction[, i, ]
      next_token <- sample_fn(prediction) - 1L
      tokens[, i + 1] <- as.array(next_token)
    }
    tokens[1, ]                                   # CHANGED: no detokenizer
  }
  greedy_search <- function(preds) {
    op_argmax(preds)
  }
  right <- 0
  for (k in 1:20) {
    start <- sample(0:29, 1); step <- sample(1:3, 1)
    prompt <- as.integer((start + step * 0:3) %% vocab_size)
    out <- compiled_generate(prompt, greedy_search)
    want <- (start + step * 0:(sequence_length - 1)) %% vocab_size
    right <- right + mean(out[5:sequence_length] == want[5:sequence_length])
  }
  expect_gt(right / 20, 0.7)   # chance: 1 in 30

  random_sample <- function(preds, temperature = 1) {
    preds <- preds / temperature
    preds <- op_reshape(preds, c(1, -1))
    random_categorical(preds, num_samples = 1) |> op_squeeze()
  }
  sampled <- compiled_generate(c(3L, 5L, 7L), \(x) random_sample(x, temperature = 0.8))
  expect_length(sampled, sequence_length)
  expect_true(all(sampled >= 0 & sampled < vocab_size))
})
