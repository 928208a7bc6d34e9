"""User-facing texts in English and Russian; `t(lang, key, **values)`.

Every key exists in both languages (a test checks it); unknown languages fall back to English.
"""

from __future__ import annotations

LANGS = ("en", "ru")

EN: dict[str, str] = {
    "start": (
        "Hi! I am segbot. You label a few particles of one microscope image in LabelMe, send me the "
        "file, and I train your personal Cascade Mask R-CNN model. Then send me new images and I find, "
        "outline and measure every particle: overlay, LabelMe JSON, CSV in px or nm and a size histogram.\n\n"
        "{howto}\n\nTry it now: /example sends a labelled sample you can forward back to me."
    ),
    "howto": (
        "How to label in LabelMe: draw one or more rectangles labelled 'crop' around the areas you "
        "labelled completely, then outline every object inside them with polygons (or circles). The "
        "label of a shape is its class (e.g. 'particle', 'rod'). Save with the image embedded "
        "(File > Save With Image Data) and send the .json as a file — or send the image right after it."
    ),
    "help": (
        "{howto}\n\nCommands:\n/example – a labelled sample\n/train – train on what you sent\n"
        "/status – your jobs\n/cancel – stop a job\n/models – your models\n"
        "/scale 7.34 – nm per pixel (or 'scale=7.34nm' in a caption; /scale off)\n"
        "/threshold 0.7 – score threshold\n/stats – pooled statistics\n/export – all your files as a zip\n"
        "/lang – English/Русский\n/forget_me – delete everything of yours\n\n{outputs}\n\n{formats}"
    ),
    "outputs": (
        "What you get for each image: the overlay; .json (LabelMe) – correct it in LabelMe and send it "
        "back to train the next version; _objects.csv – every object's size, for Excel; _hist.png – the "
        "size histogram; _labels.tif – a label image for Fiji, napari or cellpose; _rois.zip – the "
        "outlines for Fiji's ROI Manager. For the whole set: results.xlsx for Excel and "
        "results_coco.json (COCO) for ML tools and pycocotools."
    ),
    "formats": (
        "Images I read: PNG, JPEG, TIFF, BMP, ASCII height maps and the microscopes' own files – "
        "DM3/DM4, TIA .ser, EMD, MRC, Gwyddion .gwy and Nanonis .sxm – with the scale they carry. "
        "On SEM images the info bar is left out of recognition and its scale bar is read; "
        "your /scale wins over both."
    ),
    "example_caption": (
        "A labelled sample: one crop rectangle and {n} outlined particles, image embedded. "
        "Forward it back to me to try training."
    ),
    "lang_choose": "Choose your language:",
    "lang_set": "Language: English.",
    "denied": "Sorry, this bot is private. Ask the admin to add your id {id} to the allowlist.",
    "slow_down": "Too many messages at once — please wait a few seconds.",
    "error": "Something went wrong on my side (error id {id}). Please try again; quote this id if "
    "you report it.",
    "too_big": "This file is {size:.1f} MB; the limit is {limit:.0f} MB. Split it or send a smaller image.",
    "unknown_type": (
        "I can't use '{name}'. Send a LabelMe .json, an image (PNG, JPEG, TIFF, BMP, or the microscope's "
        "own DM3/DM4, TIA .ser, EMD, MRC, .gwy, .sxm file) or a .zip of them."
    ),
    "downloading": "Checking {n} file(s)…",
    "bad_file": "{name}: {reason}",
    "summary_head": "Labels received ({n} file(s) in your training set):",
    "summary_buttons_hint": "Train now, add more labelled images, or change the options first.",
    "btn_train": "Train now",
    "btn_more": "Add more",
    "btn_options": "Options",
    "add_more": "Send more LabelMe files; they are added to the same training set. Then /train.",
    "need_image": (
        "{name} has no image inside. Send the image '{image}' as a file now (or save the JSON with the "
        "image embedded)."
    ),
    "paired": "Got the image for {name}.",
    "no_labels": "Send me labelled LabelMe files first (see /help or try /example).",
    "options_title": "Training options:\npreset {arch}, {iters} iterations, augmentation {aug}, "
    "rescale {rescale}.\n"
    "Estimated time: {estimate}.",
    "estimate": "about {minutes} min ({iterations} iterations)",
    "estimate_unknown": "not measured yet for this preset on this server ({iterations} iterations); "
    "the first training measures it",
    "wait_next": "It starts next.",
    "wait_ahead": "Starts in about {minutes} min, jobs ahead: {ahead}.",
    "wait_ahead_unknown": "Jobs ahead: {ahead}.",
    "btn_start": "Start training",
    "auto": "auto",
    "on": "on",
    "off": "off",
    "queued_train": "Training job #{job} queued (position {pos}). Estimated time: {estimate}. {wait} "
    "I will edit this message with progress.",
    "already_queued": "Already queued (#{job}); /status shows how it goes.",
    "already_trained": "Already trained in job #{job}; /models lists the result.",
    "queued_predict": "Recognition job #{job} queued for {n} image(s) (position {pos}).",
    "queue_limit": "{reason}",
    "progress": "Job #{job} ({kind}): {stage} {pct}%{loss}{eta}",
    "progress_done": "Job #{job} ({kind}): finished.",
    "progress_failed": "Job #{job} ({kind}): failed.",
    "progress_cancelled": "Job #{job} ({kind}): cancelled.",
    "queued_state": "waiting in the queue",
    "queued_wait": "- starts in about {minutes} min, jobs ahead: {ahead}",
    "train_done": "Model v{version} is ready.{figures}\nIt is now your active model: send images to "
    "recognise.",
    "fig_learned": "Learned from {objects} in {crops}: {counts}.",
    "fig_holdout": "Check on a crop held out from training ({n} labelled objects): precision {precision} "
    "(the share of what it found that is right), recall {recall} (the share of your objects it found).",
    "fig_holdout_range": "Together (F1) {f1}; on another crop like it, likely between {low} and {high} "
    "(90 % range): one crop holds few objects.",
    "fig_holdout_caveat": "Measured on one crop of your image; other images may score lower.",
    "fig_no_holdout": "Not checked on held-out labels: that needs {min_objects} or more labelled objects in "
    "2 or more crops.",
    "fig_time": "Trained in {time} on {device}.",
    "fig_few": "Few labels for {classes}: label about {enough} or more objects of each class for a "
    "reliable model.",
    "short_fig_learned": "learned from {objects} in {crops} ({counts})",
    "short_fig_holdout": "held-out crop ({n} objects): precision {precision}, recall {recall}",
    "short_fig_no_holdout": "no held-out check",
    "short_fig_time": "{time} on {device}",
    "short_fig_few": "few labels: {classes}",
    "job_failed": "Job #{job} failed: {reason}",
    "predict_caption": "{name}: {n} objects{counts}{size}{density}{scaled}",
    "size_line": "\nmean D = {mean} ± {std} {unit}",
    "scaled_line": "\nparticles larger than in your labels: recognised at {factor}x",
    "inset_caption": "{name}, zoomed: the region in the yellow frame on the overlay.",
    "predict_big": "{n} images recognised; all outputs are in the zip.\nPooled: {total} objects{counts}\n"
    "mean D = {mean} ± {std} {unit}",
    "no_jobs": "You have no jobs.",
    "status_line": "#{job} {kind}: {state}{extra}",
    "cancel_none": "Nothing to cancel.",
    "cancel_usage": "Usage: /cancel, or /cancel #12 with a job number from /status.",
    "cancel_ok": "Cancelling job #{job}.",
    "cancel_fail": "Job #{job} has already finished.",
    "no_models": "You have no models yet. Send labels and /train.",
    "model_line": "v{version} {name}– {status}, {date}{active}{metrics}",
    "active_mark": " [active]",
    "btn_use": "Use v{version}",
    "btn_rename": "Rename v{version}",
    "btn_delete": "Delete v{version}",
    "model_used": "Model v{version} is now active.",
    "model_renamed": "Model v{version} is now called '{name}'.",
    "model_deleted": "Model v{version} deleted.",
    "model_missing": "That model no longer exists.",
    "rename_prompt": "Send the new name for v{version} (up to 60 characters).",
    "model_not_ready": "Model v{version} is not ready.",
    "no_model_image": (
        "This is an image, but you have no active model yet. To train one, send a LabelMe file with "
        "labels (see /help)."
    ),
    "images_head": "Images received:",
    "scale_from": "scale {value} nm/px from {source}; {hint}",
    "scale_hint": "/scale to change",
    "scale_yours": "scale {value} nm/px as you set it{own}",
    "scale_yours_own": " (not the file's {value} nm/px from {source})",
    "scale_none": "no scale in the file, sizes in px; set one with /scale 7.34 or 'scale=7.34nm' in the "
    "caption",
    "scale_left_out": "left out of recognition and statistics: {regions}",
    "scale_check": "not sure of this reading: answer below",
    "scale_unsure": (
        "{name}: the scale bar reads {value} nm/px ({source}), but I am not sure of this reading "
        "(confidence {conf}). Use it? Recognition starts when you answer."
    ),
    "btn_scale_use": "Use {value} nm/px",
    "btn_scale_no": "No scale",
    "scale_used": "{name}: scale {value} nm/px, as you confirmed.",
    "scale_not_used": "{name}: no scale from the scale bar; sizes in px (or your /scale).",
    "scale_answered": "Already answered: job #{job}.",
    "photo_note": "Note: compressed photos lose detail; send images as files to keep full resolution.",
    "scale_set": "Scale: {value} nm per pixel.",
    "scale_off": "Scale removed; sizes will be in pixels.",
    "scale_usage": "Usage: /scale 7.34 (nm per pixel) or /scale off. Now: {value}.",
    "threshold_set": "Score threshold: {value}.",
    "threshold_usage": "Usage: /threshold 0.7 (between 0.05 and 0.95). Now: {value}.",
    "stats_none": "No results yet: send images to recognise first.",
    "stats": "Pooled over {n} image(s): {total} objects{counts}\nmean D = {mean} ± {std} {unit}",
    "export_none": "You have nothing to export yet.",
    "export_big": "Your export is {size:.0f} MB, over the 50 MB Telegram limit; delete old models or "
    "ask the admin.",
    "export_caption": "All your files.",
    "forget_confirm": "Delete ALL your files, results, models and settings? This cannot be undone.",
    "btn_forget_yes": "Yes, delete everything",
    "btn_cancel": "Cancel",
    "forgotten": "Done: everything of yours is deleted. Send /start to begin again.",
    "forgotten_already": "Nothing of yours is stored: it was deleted already.",
    "cancelled": "Cancelled.",
    "correction": (
        "This looks like a corrected version of result '{name}' ({n} objects). Train the next model version "
        "with it?"
    ),
    "btn_train_correction": "Train next version",
    "correction_saved": "Correction saved (-{removed}, +{added} objects{relabelled}). "
    "Train the next version?\n{name}: {n} objects now.",
    "relabelled": ", {n} relabelled",
    "btn_review": "Review",
    "btn_review_named": "Review {name}",
    "admin_only": "This command is for admins.",
    "admin": "Queue: {queue}\nUsers: {users}\nJobs in 24 h: {jobs24}, GPU seconds in 24 h: {gpu:.0f}\n"
    "Broadcast: /admin broadcast <text>",
    "broadcast_done": "Sent to {n} user(s).",
    "unknown_command": "Unknown command. See /help.",
    "text_hint": "Send a LabelMe .json or an image as a file, or see /help.",
    "stale_button": "This button has expired; please start again.",
    "zip_bad": "{name}: not a usable zip ({reason}).",
    "zip_empty": "{name}: no LabelMe .json or images inside.",
}

RU: dict[str, str] = {
    "start": (
        "Привет! Я segbot. Разметьте несколько частиц на одном снимке микроскопа в LabelMe, пришлите мне "
        "файл, и я обучу вашу личную модель Cascade Mask R-CNN. Затем присылайте новые снимки: я найду, "
        "обведу и измерю каждую частицу — наложение, LabelMe JSON, CSV в px или нм и гистограмма "
        "размеров.\n\n"
        "{howto}\n\nПопробуйте сразу: /example пришлёт размеченный пример, перешлите его мне обратно."
    ),
    "howto": (
        "Как размечать в LabelMe: нарисуйте один или несколько прямоугольников с меткой 'crop' вокруг "
        "полностью размеченных областей, затем обведите каждый объект внутри полигонами (или кругами). "
        "Метка фигуры — её класс (например, 'particle', 'rod'). Сохраните с изображением внутри "
        "(File > Save With Image Data) и пришлите .json файлом — или пришлите изображение сразу после него."
    ),
    "help": (
        "{howto}\n\nКоманды:\n/example – размеченный пример\n/train – обучить на присланном\n"
        "/status – ваши задачи\n/cancel – остановить задачу\n/models – ваши модели\n"
        "/scale 7.34 – нм на пиксель (или 'scale=7.34nm' в подписи; /scale off)\n"
        "/threshold 0.7 – порог уверенности\n/stats – сводная статистика\n/export – все ваши файлы в zip\n"
        "/lang – English/Русский\n/forget_me – удалить всё ваше\n\n{outputs}\n\n{formats}"
    ),
    "outputs": (
        "Что вы получаете для каждого снимка: наложение; .json (LabelMe) – исправьте его в LabelMe и "
        "пришлите обратно, чтобы обучить следующую версию; _objects.csv – размеры каждого объекта, для "
        "Excel; _hist.png – гистограмма размеров; _labels.tif – изображение меток для Fiji, napari или "
        "cellpose; _rois.zip – контуры для ROI Manager в Fiji. Для всего набора: results.xlsx для Excel "
        "и results_coco.json (COCO) для ML-инструментов и pycocotools."
    ),
    "formats": (
        "Какие снимки я читаю: PNG, JPEG, TIFF, BMP, ASCII-карты высот и собственные файлы микроскопов – "
        "DM3/DM4, TIA .ser, EMD, MRC, Gwyddion .gwy и Nanonis .sxm – с масштабом, записанным в них. "
        "На снимках СЭМ информационная полоса не распознаётся, а её масштабная линейка считывается; "
        "ваш /scale важнее и того, и другого."
    ),
    "example_caption": (
        "Размеченный пример: один прямоугольник crop и {n} обведённых частиц, изображение внутри. "
        "Перешлите его мне, чтобы попробовать обучение."
    ),
    "lang_choose": "Выберите язык:",
    "lang_set": "Язык: русский.",
    "denied": "Извините, это закрытый бот. Попросите администратора добавить ваш id {id} в список.",
    "slow_down": "Слишком много сообщений сразу — подождите несколько секунд.",
    "error": "Что-то пошло не так на моей стороне (код ошибки {id}). Попробуйте ещё раз; сообщите этот код.",
    "too_big": "Файл {size:.1f} МБ, а предел {limit:.0f} МБ. Разделите его или пришлите изображение "
    "поменьше.",
    "unknown_type": (
        "Не могу использовать '{name}'. Пришлите LabelMe .json, изображение (PNG, JPEG, TIFF, BMP или "
        "собственный файл микроскопа DM3/DM4, TIA .ser, EMD, MRC, .gwy, .sxm) или .zip."
    ),
    "downloading": "Проверяю файлов: {n}…",
    "bad_file": "{name}: {reason}",
    "summary_head": "Разметка получена (файлов в обучающем наборе: {n}):",
    "summary_buttons_hint": "Обучить сейчас, добавить ещё размеченные снимки или сначала изменить параметры.",
    "btn_train": "Обучить",
    "btn_more": "Добавить ещё",
    "btn_options": "Параметры",
    "add_more": "Присылайте ещё файлы LabelMe: они добавятся в тот же набор. Затем /train.",
    "need_image": (
        "В {name} нет изображения. Пришлите файлом изображение '{image}' (или сохраните JSON с "
        "изображением внутри)."
    ),
    "paired": "Изображение для {name} получено.",
    "no_labels": "Сначала пришлите размеченные файлы LabelMe (см. /help или /example).",
    "options_title": "Параметры обучения:\nпресет {arch}, итераций {iters}, аугментация {aug}, "
    "масштаб {rescale}.\n"
    "Примерное время: {estimate}.",
    "estimate": "около {minutes} мин (итераций: {iterations})",
    "estimate_unknown": "ещё не измерено для этого пресета на этом сервере (итераций: {iterations}); "
    "первое обучение его измерит",
    "wait_next": "Начнётся следующей.",
    "wait_ahead": "Начнётся примерно через {minutes} мин, задач впереди: {ahead}.",
    "wait_ahead_unknown": "Задач впереди: {ahead}.",
    "btn_start": "Начать обучение",
    "auto": "авто",
    "on": "вкл",
    "off": "выкл",
    "queued_train": "Задача обучения #{job} в очереди (позиция {pos}). Примерное время: {estimate}. {wait} "
    "Я буду обновлять это сообщение.",
    "already_queued": "Уже в очереди (#{job}); ход — в /status.",
    "already_trained": "Уже обучено в задаче #{job}; результат — в /models.",
    "queued_predict": "Задача распознавания #{job}: изображений {n} (позиция {pos}).",
    "queue_limit": "{reason}",
    "progress": "Задача #{job} ({kind}): {stage} {pct}%{loss}{eta}",
    "progress_done": "Задача #{job} ({kind}): готово.",
    "progress_failed": "Задача #{job} ({kind}): ошибка.",
    "progress_cancelled": "Задача #{job} ({kind}): отменена.",
    "queued_state": "ждёт в очереди",
    "queued_wait": "- начнётся примерно через {minutes} мин, задач впереди: {ahead}",
    "train_done": "Модель v{version} готова.{figures}\nТеперь она активна: присылайте снимки для "
    "распознавания.",
    "fig_learned": "Обучена на {objects} в {crops}: {counts}.",
    "fig_holdout": "Проверка на области crop, отложенной от обучения (размеченных объектов: {n}): точность "
    "{precision} (доля верного среди найденного), полнота {recall} (доля найденного среди ваших объектов).",
    "fig_holdout_range": "Вместе (F1) {f1}; на другой такой области, вероятно, от {low} до {high} (90 %): "
    "в одной области мало объектов.",
    "fig_holdout_caveat": "Измерено на одной области вашего снимка; на других снимках может быть ниже.",
    "fig_no_holdout": "Проверки на отложенной разметке нет: для неё нужно от {min_objects} размеченных "
    "объектов в 2 и более областях crop.",
    "fig_time": "Время обучения {time}, устройство {device}.",
    "fig_few": "Мало разметки для {classes}: для надёжной модели разметьте около {enough} или больше "
    "объектов каждого класса.",
    "short_fig_learned": "обучена на {objects} в {crops} ({counts})",
    "short_fig_holdout": "отложенная область (объектов: {n}): точность {precision}, полнота {recall}",
    "short_fig_no_holdout": "без проверки на отложенной области",
    "short_fig_time": "{time}, {device}",
    "short_fig_few": "мало разметки: {classes}",
    "job_failed": "Задача #{job} не выполнена: {reason}",
    "predict_caption": "{name}: объектов {n}{counts}{size}{density}{scaled}",
    "size_line": "\nсредний D = {mean} ± {std} {unit}",
    "scaled_line": "\nчастицы крупнее, чем в вашей разметке: распознано в масштабе {factor}x",
    "inset_caption": "{name}, увеличение: область в жёлтой рамке на наложении.",
    "predict_big": "Распознано изображений: {n}; все результаты в zip.\nВсего: объектов {total}{counts}\n"
    "средний D = {mean} ± {std} {unit}",
    "no_jobs": "У вас нет задач.",
    "status_line": "#{job} {kind}: {state}{extra}",
    "cancel_none": "Нечего отменять.",
    "cancel_usage": "Использование: /cancel или /cancel #12 с номером задачи из /status.",
    "cancel_ok": "Отменяю задачу #{job}.",
    "cancel_fail": "Задача #{job} уже завершена.",
    "no_models": "Моделей пока нет. Пришлите разметку и /train.",
    "model_line": "v{version} {name}– {status}, {date}{active}{metrics}",
    "active_mark": " [активна]",
    "btn_use": "Выбрать v{version}",
    "btn_rename": "Переименовать v{version}",
    "btn_delete": "Удалить v{version}",
    "model_used": "Модель v{version} теперь активна.",
    "model_renamed": "Модель v{version} теперь называется '{name}'.",
    "model_deleted": "Модель v{version} удалена.",
    "model_missing": "Этой модели больше нет.",
    "rename_prompt": "Пришлите новое имя для v{version} (до 60 символов).",
    "model_not_ready": "Модель v{version} не готова.",
    "no_model_image": (
        "Это изображение, но активной модели у вас пока нет. Чтобы обучить её, пришлите файл LabelMe "
        "с разметкой (см. /help)."
    ),
    "images_head": "Снимки получены:",
    "scale_from": "масштаб {value} нм/пкс, источник: {source}; {hint}",
    "scale_hint": "/scale – изменить",
    "scale_yours": "масштаб {value} нм/пкс, заданный вами{own}",
    "scale_yours_own": " (а не {value} нм/пкс из файла, источник: {source})",
    "scale_none": "масштаба в файле нет, размеры в пикселях; задайте его: /scale 7.34 или 'scale=7.34nm' "
    "в подписи",
    "scale_left_out": "не распознаётся и не входит в статистику: {regions}",
    "scale_check": "в этом чтении я не уверен: ответьте ниже",
    "scale_unsure": (
        "{name}: масштабная линейка даёт {value} нм/пкс ({source}), но в этом чтении я не уверен "
        "(уверенность {conf}). Использовать его? Распознавание начнётся после ответа."
    ),
    "btn_scale_use": "Использовать {value} нм/пкс",
    "btn_scale_no": "Без масштаба",
    "scale_used": "{name}: масштаб {value} нм/пкс, как вы подтвердили.",
    "scale_not_used": "{name}: без масштаба по линейке; размеры в пикселях (или по вашему /scale).",
    "scale_answered": "Уже отвечено: задача #{job}.",
    "photo_note": "Примечание: сжатые фото теряют детали; присылайте изображения файлами.",
    "scale_set": "Масштаб: {value} нм на пиксель.",
    "scale_off": "Масштаб убран; размеры будут в пикселях.",
    "scale_usage": "Использование: /scale 7.34 (нм на пиксель) или /scale off. Сейчас: {value}.",
    "threshold_set": "Порог уверенности: {value}.",
    "threshold_usage": "Использование: /threshold 0.7 (от 0.05 до 0.95). Сейчас: {value}.",
    "stats_none": "Результатов пока нет: сначала пришлите снимки для распознавания.",
    "stats": "По {n} изображениям: объектов {total}{counts}\nсредний D = {mean} ± {std} {unit}",
    "export_none": "Экспортировать пока нечего.",
    "export_big": "Архив {size:.0f} МБ, больше предела Telegram 50 МБ; удалите старые модели или "
    "обратитесь к администратору.",
    "export_caption": "Все ваши файлы.",
    "forget_confirm": "Удалить ВСЕ ваши файлы, результаты, модели и настройки? Это необратимо.",
    "btn_forget_yes": "Да, удалить всё",
    "btn_cancel": "Отмена",
    "forgotten": "Готово: всё ваше удалено. Отправьте /start, чтобы начать заново.",
    "forgotten_already": "Ваших данных нет: они уже удалены.",
    "cancelled": "Отменено.",
    "correction": (
        "Похоже, это исправленный результат '{name}' (объектов {n}). Обучить с ним следующую версию модели?"
    ),
    "btn_train_correction": "Обучить новую версию",
    "correction_saved": "Исправление сохранено (-{removed}, +{added} объектов{relabelled}). "
    "Обучить следующую версию?\n{name}: теперь объектов {n}.",
    "relabelled": ", сменён класс у {n}",
    "btn_review": "Проверить",
    "btn_review_named": "Проверить {name}",
    "admin_only": "Эта команда только для администраторов.",
    "admin": "Очередь: {queue}\nПользователи: {users}\nЗадач за 24 ч: {jobs24}, GPU-секунд за 24 ч: "
    "{gpu:.0f}\n"
    "Рассылка: /admin broadcast <текст>",
    "broadcast_done": "Отправлено пользователям: {n}.",
    "unknown_command": "Неизвестная команда. См. /help.",
    "text_hint": "Пришлите LabelMe .json или изображение файлом, или см. /help.",
    "stale_button": "Эта кнопка устарела; начните заново.",
    "zip_bad": "{name}: непригодный zip ({reason}).",
    "zip_empty": "{name}: внутри нет LabelMe .json или изображений.",
}

MESSAGES = {"en": EN, "ru": RU}


def lang_of(language_code: str | None) -> str:
    """Telegram's language_code -> one of LANGS."""
    code = (language_code or "").lower()
    return "ru" if code.startswith(("ru", "uk", "be", "kk")) else "en"


def t(lang: str, key: str, **values: object) -> str:
    table = MESSAGES.get(lang, EN)
    template = table.get(key) or EN[key]
    for part in ("howto", "outputs", "formats"):  # texts shared by several messages
        if "{" + part + "}" in template and part not in values:
            values[part] = table.get(part, EN[part])
    return template.format(**values)
