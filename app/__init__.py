"""The product: the reproduction's networks pointed at your own pictures.

    faces.py     find faces in a photo or a frame and cut each one as FER2013 cut its faces
    mtcnn.py     MTCNN, the better face finder (its weights from facenet-pytorch, an optional extra)
    tracking.py  follow faces between detections, so that labels do not flicker
    photos.py    python app/photos.py --weights W --images me.jpg     every face's emotion, Grad-CAM
    camera.py    python app/camera.py --weights W                     a camera or video, live
    serve.py     python app/serve.py --weights W                      the same in your browser (serve.html)
    export.py    python app/export.py --weights W --out bundle/      ONNX for apps: the bundle that runtime/ and page/ run

It imports the reproduction (data, model, weights, gradcam); nothing there imports it back.
"""
